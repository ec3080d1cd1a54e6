"""Migration: a VM to another host, several VMs at once, a host's evacuation (each a job: 202)."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
