"""A registry of golden edit cases, one per test module."""

from collections.abc import Callable
from pathlib import Path

from virt.xml import XMLObject

GOLDEN = Path(__file__).parent / "golden"
Edit = Callable[..., XMLObject]
GoldenCheck = Callable[[str, Edit], None]  # the golden fixture, see conftest.py


class Cases(dict[str, Edit]):
    def case(self, name: str) -> Callable[[Edit], Edit]:
        def register(edit: Edit) -> Edit:
            self[name] = edit
            return edit

        return register
