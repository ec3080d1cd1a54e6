"""Storage pools and volumes, with streamed upload and download."""

from __future__ import annotations

from typing import Any

urlpatterns: list[Any] = []
