"""The consoles speak their user's language: why a console was refused or ended reaches the page in the close
frame, in the language its user chose (or the browser's), while the audit keeps the English words."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from console.sockets import MAX_REASON_BYTES, close_words, language_from
from console.tickets import Refused
from tests.unit import test_serial_console as serial
from tests.unit.test_serial_console import _open, _until_closed, connect, mint, refused, session_key, ws_path
from webkvm.models import AuditEvent, UserLanguage

pytestmark = pytest.mark.django_db(transaction=True)
# The serial console's fixtures: its test host (web-01 with a serial port), fake consoles, a second viewer.
test_host, consoles, bob_client = serial.test_host, serial.consoles, serial.bob_client


def speaks_chinese(*clients: Client) -> None:
    for client in clients:
        UserLanguage.objects.update_or_create(user_id=client.session["_auth_user_id"],
                                              defaults={"language": "zh-hans"})


def test_a_refusal_is_said_in_the_users_language_and_audited_in_english(user_client, consoles) -> None:
    speaks_chinese(user_client)
    reason = refused(connect(ws_path(mint(user_client, kind="vnc")), session_key(user_client)))
    assert reason == "控制台票据用于 VNC 控制台，而不是串口控制台"  # noqa: RUF001
    assert AuditEvent.objects.get(action="console.refused").detail.startswith(
        "console ticket is for the VNC console, not the serial one")


def test_an_anonymous_refusal_follows_the_browser() -> None:
    assert language_from("", "zh-CN,zh;q=0.9,en;q=0.5") == "zh-hans"
    assert language_from("", "de-DE,de;q=0.9") == "en"
    assert close_words(Refused("no console ticket"), "zh-hans") == "没有控制台票据"
    assert close_words(Refused("no console ticket"), "en") == "no console ticket"


def test_a_take_over_is_said_to_each_in_their_own_language(user_client, bob_client, consoles) -> None:
    speaks_chinese(user_client)  # alice reads Chinese, bob English
    alice_path, alice_cookie = ws_path(mint(user_client)), session_key(user_client)
    bob_path, bob_cookie = ws_path(mint(bob_client), extra="&takeover=1"), session_key(bob_client)

    async def run() -> dict:
        alice, _first = await _open(alice_path, alice_cookie)
        bob, _bob_first = await _open(bob_path, bob_cookie)
        closing = await _until_closed(alice)
        await alice.disconnect()
        await bob.disconnect()
        return closing
    closing = async_to_sync(run)()
    assert closing["code"] == 4001 and closing["reason"] == "已被 bob 接管"


def test_a_long_reason_fits_a_close_frame() -> None:
    words = close_words(Refused("{vm}: ssh tunnel to the host failed", "x" * 300, vm="web-01"), "zh-hans")
    assert words.startswith("web-01：到宿主机的 SSH 隧道失败：")  # noqa: RUF001
    assert len(words.encode()) <= MAX_REASON_BYTES
