"""The hardened parser: hostile documents are refused quickly with a short, safe message."""

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import virt.xml.parser
from virt.xml import Domain, XMLInputError, parse_xml

FAST = 0.5  # seconds; an expanding or fetching parser would blow far past this

XXE_FILE = (
    '<?xml version="1.0"?>\n<!DOCTYPE domain [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<domain>&xxe;</domain>'
)
EXTERNAL_DTD = '<!DOCTYPE domain SYSTEM "http://127.0.0.1:9/evil.dtd">\n<domain/>'
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol0 "lol">\n'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10))
    + "]>\n<lolz>&lol9;</lolz>"
)
HOSTILE = {"xxe-file": XXE_FILE, "external-dtd": EXTERNAL_DTD, "billion-laughs": BILLION_LAUGHS}


def timed_error(call: Callable[[], object]) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(XMLInputError) as excinfo:
        call()
    return str(excinfo.value), time.monotonic() - start


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_dtd_attacks_are_refused_fast(name: str) -> None:
    for document in (HOSTILE[name], HOSTILE[name].encode()):
        message, elapsed = timed_error(lambda: parse_xml(document))  # noqa: B023
        assert message == "DOCTYPE is not allowed"
        assert elapsed < FAST


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_parser_options_alone_also_defuse_dtd_attacks(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Second line of defence: even if the prolog scan missed a DOCTYPE, lxml must
    # neither read files, fetch URLs nor expand entities before we refuse the result.
    monkeypatch.setattr(virt.xml.parser, "_prolog_has_doctype", lambda _text: False)
    message, elapsed = timed_error(lambda: parse_xml(HOSTILE[name]))
    assert message == "DOCTYPE is not allowed" or message.startswith("malformed XML: line ")
    assert "root:" not in message
    assert elapsed < FAST


def test_doctype_is_found_behind_bom_declaration_comments_and_pis() -> None:
    document = '\ufeff<?xml version="1.0"?>\n<!-- a comment --><?pi data?>\n<!DOCTYPE a><a/>'
    with pytest.raises(XMLInputError, match=r"^DOCTYPE is not allowed$"):
        parse_xml(document)


def test_doctype_text_inside_the_document_is_harmless() -> None:
    root = parse_xml("<domain><!-- <!DOCTYPE x> --><description>&lt;!DOCTYPE&gt;</description></domain>")
    assert root.findtext("description") == "<!DOCTYPE>"


def test_undeclared_entity_is_malformed() -> None:
    with pytest.raises(XMLInputError, match=r"^malformed XML: line 1: Entity 'xxe' not defined"):
        parse_xml("<domain>&xxe;</domain>")


@pytest.mark.parametrize("as_bytes", [False, True])
def test_documents_over_the_cap_are_refused_before_parsing(as_bytes: bool) -> None:
    document = "<domain><description>" + "x" * (1 << 20) + "</description></domain>"
    message, elapsed = timed_error(lambda: parse_xml(document.encode() if as_bytes else document))
    assert message == "XML document too large"
    assert elapsed < FAST


def test_cap_counts_utf8_bytes_not_characters() -> None:
    document = "<a>" + "é" * 600 + "</a>"  # 606 characters, 1206 bytes
    assert parse_xml(document, max_bytes=2000).text == "é" * 600
    with pytest.raises(XMLInputError, match="too large"):
        parse_xml(document, max_bytes=1000)


def test_malformed_xml_reports_the_line() -> None:
    with pytest.raises(XMLInputError) as excinfo:
        Domain.from_xml("<domain>\n  <name>web1</name>\n</domian>\n")
    message = str(excinfo.value)
    assert message.startswith("malformed XML: line 3: ")
    assert "mismatch" in message
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ("", "Document is empty"),
        ("hello", "Start tag expected"),
        ("<a/><b/>", "Extra content"),
        ("<a>" * 300 + "</a>" * 300, "depth"),  # huge_tree=False keeps libxml2's nesting limit
    ],
)
def test_other_malformed_documents(document: str, fragment: str) -> None:
    with pytest.raises(XMLInputError, match=f"^malformed XML: line 1: .*{fragment}"):
        parse_xml(document)


def test_only_utf8_bytes_are_accepted() -> None:
    with pytest.raises(XMLInputError, match="UTF-8"):
        parse_xml("<a>é</a>".encode("utf-16"))


def test_str_with_an_encoding_declaration_parses() -> None:
    # lxml refuses such str input on its own; libvirt and editors produce it.
    assert parse_xml('<?xml version="1.0" encoding="ISO-8859-1"?><a>é</a>').text == "é"
    assert parse_xml('<?xml version="1.0" encoding="UTF-8"?><a>é</a>'.encode()).text == "é"


def test_from_xml_checks_the_root_element() -> None:
    with pytest.raises(XMLInputError, match="expected <domain>, got <network>"):
        Domain.from_xml("<network><name>default</name></network>")


def test_virt_xml_does_not_import_django() -> None:
    code = "import sys, virt.xml; assert not [m for m in sys.modules if m.startswith('django')]"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
