"""The icon tag: every icon a template names exists in the installed set, and icons stay decoration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.template import Context, Template
from lxml import etree

from webkvm.templatetags.icons import UnknownIcon, icon_svg

ROOT = Path(__file__).resolve().parents[2]
USED = re.compile(r"""{%\s*icon\s+["']([^"']+)["']""")


def template_files() -> list[Path]:
    """The project's templates and each app's own (templates/ and APP/templates/)."""
    return [*ROOT.glob("templates/**/*.html"), *ROOT.glob("*/templates/**/*.html")]


def test_every_icon_named_in_a_template_is_installed() -> None:
    used = {(path.relative_to(ROOT), name) for path in template_files() for name in USED.findall(path.read_text())}
    assert any(str(path) == "templates/base.html" for path, _ in used)  # the navigation uses icons
    missing = []
    for path, name in sorted(used):
        try:
            icon_svg(name)
        except UnknownIcon:
            missing.append(f"{path}: {name}")
    assert not missing


def test_the_tag_inlines_a_hidden_svg_that_takes_the_text_colour() -> None:
    html = Template('{% load icons %}{% icon "play" "big" %}').render(Context())
    svg = etree.fromstring(html)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert (svg.get("class"), svg.get("aria-hidden"), svg.get("stroke")) == ("icon big", "true", "currentColor")
    assert "style" not in html and "<!--" not in html  # the Content-Security-Policy refuses inline styles


@pytest.mark.parametrize("name", ["no-such-icon", "../../package", "Play", "play.svg", ""])
def test_an_unknown_or_path_like_name_is_refused(name: str) -> None:
    with pytest.raises(UnknownIcon):
        icon_svg(name)
