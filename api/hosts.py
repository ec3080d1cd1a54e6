"""Hosts (admins): add over each transport, edit, test, status, capabilities, remove, share; flavors."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
