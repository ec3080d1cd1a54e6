"""A VM's life: create, delete, clone, migrate, snapshots, console ticket; host evacuation; job cancel."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
