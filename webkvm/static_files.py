"""WhiteNoise, indexing the static files once per process.

Django builds its middleware again for every request handler, and so for every test client: WhiteNoise's index
of the ~700 static files then cost 50 ms (300 ms on a busy machine) each time. A panel process builds one
handler, so this changes nothing there: the index is taken when the process starts, as WhiteNoise does.
"""

from typing import Any

from whitenoise.middleware import WhiteNoiseMiddleware

_INDEXES: dict[tuple[str, str], dict[str, Any]] = {}


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]  # whitenoise has no type hints
    files: dict[str, Any]

    def update_files_dictionary(self, root: str, prefix: str) -> None:
        index = _INDEXES.get((root, prefix))
        if index is None:
            others = self.files
            self.files = {}
            super().update_files_dictionary(root, prefix)
            index = _INDEXES[(root, prefix)] = self.files
            self.files = others
        self.files.update(index)
