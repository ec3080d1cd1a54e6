"""The catalogs are complete and current: every marked string of the code has a zh-Hans translation, no
catalog lags behind the code (makemessages run again on a copy must find exactly the same strings), and
every catalog compiles with its formats checked (`msgfmt --check-format`, as compilemessages does)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import i18n  # noqa: E402  (scripts/i18n.py: the one place that runs makemessages)

CATALOGS = i18n.catalogs(ROOT)
BRACES = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
PERCENT = re.compile(r"%\([A-Za-z_]+\)[sdf]|%[sdf]")


def _keys(path: Path) -> set[tuple[str, str, str]]:
    return {(e.msgctxt or "", e.msgid, e.msgid_plural or "") for e in polib.pofile(str(path))}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The code copied (without what pip, npm and the tests installed or made) and its catalogs re-read."""
    copy = tmp_path_factory.mktemp("catalogs") / "tree"
    skipped = {".git", ".venv", "node_modules", "var", "tests", "bench", "docs", ".mypy_cache", ".ruff_cache",
               ".pytest_cache", "__pycache__"}
    shutil.copytree(ROOT, copy, ignore=lambda folder, names: [n for n in names if n in skipped or n.endswith(".mo")])
    i18n.makemessages(copy)
    return copy


def test_there_are_catalogs() -> None:
    assert len(CATALOGS) >= 2, CATALOGS  # Python and templates (django), and the front-end (djangojs)


def test_no_catalog_lags_behind_the_code(fresh: Path) -> None:
    made = {p.relative_to(fresh) for p in i18n.catalogs(fresh)}
    kept = {p.relative_to(ROOT) for p in CATALOGS}
    assert made == kept, "catalogs to add or remove: run `python scripts/i18n.py update`"
    stale = {}
    for relative in sorted(kept):
        now, then = _keys(fresh / relative), _keys(ROOT / relative)
        if now != then:
            stale[str(relative)] = {"new in the code": sorted(now - then)[:20], "gone": sorted(then - now)[:20]}
    assert not stale, f"run `python scripts/i18n.py update`, then translate: {stale}"


@pytest.mark.parametrize("catalog", CATALOGS, ids=[str(p.relative_to(ROOT)) for p in CATALOGS])
def test_every_string_is_translated_with_the_same_placeholders(catalog: Path) -> None:
    untranslated, fuzzy, misfit = [], [], []
    for entry in polib.pofile(str(catalog)):
        if "fuzzy" in entry.flags:
            fuzzy.append(entry.msgid)
        translations = list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]
        if not all(t.strip() for t in translations):
            untranslated.append(entry.msgid)
            continue
        for pattern in (BRACES, PERCENT):
            wanted = sorted(set(pattern.findall(entry.msgid)))
            if any(sorted(set(pattern.findall(t))) != wanted for t in translations) and not entry.msgid_plural:
                misfit.append(entry.msgid)
    assert not untranslated, f"{len(untranslated)} untranslated (python scripts/i18n.py missing): {untranslated[:30]}"
    assert not fuzzy, f"fuzzy (check, then drop the flag): {fuzzy[:30]}"
    assert not misfit, f"translations whose placeholders differ from the English: {misfit[:30]}"


@pytest.mark.parametrize("catalog", CATALOGS, ids=[str(p.relative_to(ROOT)) for p in CATALOGS])
def test_every_catalog_compiles(catalog: Path, tmp_path: Path) -> None:
    done = subprocess.run(["msgfmt", "--check-format", "-o", str(tmp_path / "out.mo"), str(catalog)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
