"""Flavors: the sizes VMs are created from (admins edit them)."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
