"""Virtual networks and their DHCP hosts."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
