"""The translation catalogs, kept in step with the code (docs/translating.md).

  python scripts/i18n.py update            re-read the code into every catalog (manage.py makemessages)
  python scripts/i18n.py fill FILE.po ...  copy translations from FILE.po into every catalog's untranslated entries,
                                           then compile the catalogs
  python scripts/i18n.py missing [PART]    list untranslated entries (of one part: instances, virt, static...)

Each command holds one lock, so several people (or scripts) may run them at once without losing an edit."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polib

ROOT = Path(__file__).resolve().parent.parent
LANGUAGE = "zh_Hans"
# Folders without user-facing strings of the panel: tests, tooling, and what npm and pip installed.
IGNORED = ["node_modules", "var", "tests", "lab", "bench", "docs", "scripts", "staticfiles"]
LOCK = ROOT / "var" / "i18n.lock"


def catalogs(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in root.glob(f"**/locale/{LANGUAGE}/LC_MESSAGES/*.po")
                  if not any(part in ("node_modules", ".venv") for part in p.parts))


def makemessages(root: Path = ROOT) -> None:
    """Every marked string of the code under `root` into its catalog; what the code no longer says, out."""
    ignore = [f"--ignore={name}" for name in IGNORED]
    for part in ("api", "console", "hosts", "instances", "jobs", "networks", "storage", "virt", "."):
        (root / part / "locale").mkdir(exist_ok=True)  # settings.LOCALE_PATHS: makemessages writes, never makes
    for domain in ("django", "djangojs"):
        subprocess.run([sys.executable, "manage.py", "makemessages", "-l", LANGUAGE, "-d", domain, "--no-location",
                        "--no-obsolete", "-v0", *ignore], cwd=root, check=True)
    for path in catalogs(root):
        tidy_header(path)


HEADER = {"Project-Id-Version": "webkvm", "Language": "zh_Hans", "Language-Team": "webkvm",
          "Content-Type": "text/plain; charset=UTF-8", "Plural-Forms": "nplurals=1; plural=0;"}


def tidy_header(path: Path) -> None:
    """makemessages writes a template's header (fuzzy, placeholders): say what the file is instead."""
    po = polib.pofile(str(path), wrapwidth=0)
    po.header = "Simplified Chinese messages of webkvm: the terms follow docs/glossary-zh.md."
    po.metadata_is_fuzzy = False
    for name in ("Report-Msgid-Bugs-To", "PO-Revision-Date", "Last-Translator", "POT-Creation-Date"):
        po.metadata.pop(name, None)
    po.metadata.update(HEADER)
    po.save()


@contextmanager
def locked() -> Iterator[None]:
    LOCK.parent.mkdir(exist_ok=True)
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def fill(sources: list[Path]) -> int:
    known: dict[tuple[str, str], polib.POEntry] = {}
    for source in sources:
        for entry in polib.pofile(str(source)):
            if entry.translated():
                known[(entry.msgctxt or "", entry.msgid)] = entry
    filled = 0
    for path in catalogs():
        po = polib.pofile(str(path), wrapwidth=0)
        for entry in po:
            found = known.get((entry.msgctxt or "", entry.msgid))
            if found is None or (entry.translated() and "fuzzy" not in entry.flags):
                continue
            if entry.msgid_plural:
                entry.msgstr_plural = dict(found.msgstr_plural) or {0: found.msgstr}
            else:
                entry.msgstr = found.msgstr
            if "fuzzy" in entry.flags:
                entry.flags.remove("fuzzy")
            filled += 1
        po.save()
    return filled


def compile_all() -> None:
    """The .mo files Django reads (not kept in git: `make` compiles them at set-up)."""
    subprocess.run([sys.executable, "manage.py", "compilemessages", "-v0", "--ignore=.venv", "--ignore=node_modules"],
                   cwd=ROOT, check=True)


def missing(part: str = "") -> list[str]:
    found = []
    for path in catalogs():
        if part and not str(path.relative_to(ROOT)).startswith(part):
            continue
        for entry in polib.pofile(str(path)):
            if not entry.translated() or "fuzzy" in entry.flags:
                found.append(f"{path.relative_to(ROOT)}: {entry.msgid!r}")
    return found


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    with locked():
        if command == "update":
            makemessages()
            return 0
        if command == "fill" and rest:
            print(f"filled {fill([Path(p) for p in rest])} entries")
            compile_all()
            return 0
        if command == "missing":
            left = missing(rest[0] if rest else "")
            print("\n".join(left) or "nothing untranslated")
            return 1 if left else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
