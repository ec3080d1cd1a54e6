"""In Chromium, on the lab: two users watch the fleet view while VMs change outside the panel (virsh).
Both pages follow a VM both may see within the live deadline, over the WebSocket, without a reload;
the ordinary user's page never shows, and its WebSocket never carries, anything about a VM they have
no grant for."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import libvirt
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.lab import domain_xml
from tests.lab_resources import lab_conn, made_vms  # noqa: F401  (fixtures)
from webkvm.models import VMGrant

pytestmark = [pytest.mark.browser, pytest.mark.lab, pytest.mark.django_db(transaction=True)]
LIVE_MS = 1500  # the fleet view follows virsh within 1 s; a little more for the browser to draw it
HOST = "labhost"
ADMIN_PASSWORD = "browser-test-pass-1"
USER_PASSWORD = "browser-test-pass-2"


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def screenshot(page: Any, name: str) -> None:
    folder = Path(settings.DATA_DIR) / "test-artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name))


def record_live_frames(page: Any) -> list[str]:
    """Every text frame the page's live-updates WebSockets receive, as raw payloads (register before goto)."""
    frames: list[str] = []

    def on_socket(ws: Any) -> None:
        if "/live/ws/" in ws.url:
            ws.on("framereceived", lambda payload: frames.append(
                payload if isinstance(payload, str) else payload.decode("utf-8", "replace")))

    page.on("websocket", on_socket)
    return frames


def log_in(page: Any, base: str, username: str, password: str) -> None:
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)


def open_fleet(page: Any, url: str) -> None:
    """The fleet page, with its WebSocket open and its first (full) message applied."""
    page.goto(url)
    expect(page.locator("html")).to_have_attribute("data-live", "socket")
    expect(page.locator("#fleet[data-updated]")).to_have_count(1)
    page.evaluate("window.__marker = 'same page'")


def state_cell(page: Any, key: str) -> Any:
    return page.locator(f'tr[data-key="{key}"] [data-col=state]')


def follow(pages: dict[str, Any], key: str, state: str, timings: list[str], what: str) -> None:
    """Each page shows `state` for the VM within LIVE_MS of the change (one deadline for all pages)."""
    started = time.monotonic()
    deadline = started + LIVE_MS / 1000
    for who, page in pages.items():
        remaining = max(1.0, (deadline - time.monotonic()) * 1000)
        expect(state_cell(page, key)).to_have_text(state, timeout=remaining)
        timings.append(f"{what}: {who} shows {state!r} after {(time.monotonic() - started) * 1000:.0f} ms")


def test_two_users_follow_virsh_and_see_only_their_vms(asgi_server: str, browser, page, lab: dict[str, Any],
                                                       lab_conn: libvirt.virConnect,  # noqa: F811
                                                       made_vms: list[str]) -> None:  # noqa: F811
    # Two small diskless VMs, defined and shut off; one name prefix so the admin's page can filter on it.
    prefix = f"test-live-{uuid.uuid4().hex[:8]}"
    doms = {}
    for tag in ("a", "b"):
        name = f"{prefix}-{tag}"
        made_vms.append(name)
        doms[tag] = lab_conn.defineXML(domain_xml(name, lab["domain_type"]))
    a_name, b_name = doms["a"].name(), doms["b"].name()
    a_uuid, b_uuid = doms["a"].UUIDString().lower(), doms["b"].UUIDString().lower()
    a_key, b_key = f"{HOST}/{a_uuid}", f"{HOST}/{b_uuid}"

    host = Host.objects.create(name=HOST, transport="local", path="system")
    users = get_user_model().objects
    users.create_superuser("admin", "", ADMIN_PASSWORD)
    alice = users.create_user("alice", "", USER_PASSWORD)
    VMGrant.objects.create(user=alice, host=host, vm_uuid=a_uuid, vm_name=a_name, can_console=True, can_power=True)

    admin_page = page
    user_context = browser.new_context()
    timings: list[str] = []
    try:
        user_page = user_context.new_page()
        user_page.set_default_timeout(15000)
        admin_frames = record_live_frames(admin_page)
        user_frames = record_live_frames(user_page)
        log_in(admin_page, asgi_server, "admin", ADMIN_PASSWORD)
        log_in(user_page, asgi_server, "alice", USER_PASSWORD)
        # The admin's fleet filtered to our VMs: other VMs on the lab daemon (a benchmark's) may fill its
        # first page. The user's is the plain fleet page: it lists their one VM.
        open_fleet(admin_page, f"{asgi_server}/instances/?q={prefix}")
        open_fleet(user_page, f"{asgi_server}/instances/")
        pages = {"admin": admin_page, "user": user_page}
        for shown in pages.values():
            expect(state_cell(shown, a_key)).to_have_text("shut off")
        expect(state_cell(admin_page, b_key)).to_have_text("shut off")
        expect(user_page.locator(f'tr[data-key="{b_key}"]')).to_have_count(0)
        expect(user_page.locator("#fleet tbody tr[data-key]")).to_have_count(1)

        # A: both pages follow virsh.
        virsh("start", a_name)
        follow(pages, a_key, "running", timings, "virsh start A")
        virsh("destroy", a_name)
        follow(pages, a_key, "shut off", timings, "virsh destroy A")

        # B: the admin's page follows; the user's never hears of it.
        virsh("start", b_name)
        follow({"admin": admin_page}, b_key, "running", timings, "virsh start B")
        virsh("destroy", b_name)
        follow({"admin": admin_page}, b_key, "shut off", timings, "virsh destroy B")
        # A few more periodic reads (one a second), so that a frame leaking B would have arrived by now.
        user_page.wait_for_timeout(3000)
        screenshot(admin_page, "live-updates-admin.png")
        screenshot(user_page, "live-updates-user.png")

        for who, shown in pages.items():
            assert shown.evaluate("window.__marker") == "same page", f"{who}'s page was reloaded"
            assert shown.evaluate("document.documentElement.dataset.live") == "socket", f"{who}'s page polled"
        assert user_page.locator(f'tr[data-key="{b_key}"]').count() == 0
        assert b_name not in user_page.content()
        assert b_uuid not in user_page.content().lower()

        # The frames themselves: the user's socket carried A's changes and nothing at all about B.
        assert user_frames, "the user's page received no live frames"
        assert any(a_uuid in f.lower() for f in user_frames), user_frames
        leaks = [f for f in user_frames if b_uuid in f.lower() or b_name in f]
        assert not leaks, f"the user's WebSocket carried B ({b_name} {b_uuid}): {leaks}"
        # ... while the admin's did carry B (the check above is not vacuous).
        assert any(b_uuid in f.lower() for f in admin_frames)
        print(*user_frames, sep="\n")
        print("\n".join([*timings, f"frames received: admin {len(admin_frames)}, user {len(user_frames)}"]))
    finally:
        user_context.close()
