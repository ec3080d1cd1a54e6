"""In Chromium, on the lab: two users watch the fleet view while VMs change outside the panel (virsh).
Both pages follow a VM both may see within the live deadline, over the WebSocket, without a reload;
the ordinary user's page never shows, and its WebSocket never carries, anything about a VM they have
no grant for."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import libvirt
import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hosts.models import Host
from tests.browser.conftest import log_in, save_screenshot
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



@dataclass
class Viewer:
    """One user's fleet page and every frame its WebSockets received: (monotonic time when Playwright passed it
    on, raw payload)."""

    page: Any
    frames: list[tuple[float, str]] = field(default_factory=list)

    def record(self) -> None:
        """Register before the first goto: every socket the page opens is recorded (the fleet page's only one
        is /live/ws/)."""

        def on_frame(payload: str | bytes) -> None:
            text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
            self.frames.append((time.monotonic(), text))

        self.page.on("websocket", lambda ws: ws.on("framereceived", on_frame))

    @property
    def payloads(self) -> list[str]:
        return [payload for _, payload in self.frames]


def open_fleet(page: Any, url: str) -> None:
    """The fleet page, with its WebSocket open and its first (full) message applied."""
    page.goto(url)
    expect(page.locator("html")).to_have_attribute("data-live", "socket")
    expect(page.locator("#fleet[data-updated]")).to_have_count(1)
    page.evaluate("window.__marker = 'same page'")


def state_cell(page: Any, key: str) -> Any:
    return page.locator(f'tr[data-key="{key}"] [data-col=state]')


def summary(payload: str, key: str) -> str:
    """One live message in a few words: full or not, how many rows, this VM's state in it, hosts' words."""
    try:
        message = json.loads(payload)
    except ValueError:
        return payload[:200]
    row = (message.get("vms") or {}).get(key)
    return (f"full={message.get('full')} rows={len(message.get('vms') or {})} "
            f"this VM: {row['state'] if row else '-'} unreachable={message.get('unreachable')}")


def offers(page: Any, key: str, badge: str, acts: list[str]) -> None:
    """The row's state badge and buttons (static/js/fleet-live.js redraws them as the state changes)."""
    row = page.locator(f'tr[data-key="{key}"]')
    expect(row.locator("[data-col=state] .badge")).to_have_class(f"badge {badge}")
    buttons = row.locator("[data-col=actions] [data-act]")
    expect(buttons).to_have_count(len(acts))
    assert buttons.evaluate_all("found => found.map((el) => el.dataset.act)") == acts


def virsh_timed(timings: list[str], *args: str) -> float:
    """Run virsh; note how long it took; return when it returned (the change is made by then)."""
    started = time.monotonic()
    virsh(*args)
    done = time.monotonic()
    timings.append(f"virsh {' '.join(args)}: {(done - started) * 1000:.0f} ms")
    return done


def follow(viewers: dict[str, Viewer], key: str, state: str, since: float, timings: list[str]) -> None:
    """Each page shows `state` for the VM within LIVE_MS of `since` (one deadline for all pages); on failure,
    say what each page's socket received meanwhile."""
    deadline = since + LIVE_MS / 1000
    for who, viewer in viewers.items():
        remaining = max(1.0, (deadline - time.monotonic()) * 1000)
        try:
            expect(state_cell(viewer.page, key)).to_have_text(state, timeout=remaining)
        except AssertionError as exc:
            received = [f"{(at - since) * 1000:+.0f} ms {summary(payload, key)}" for at, payload in viewer.frames
                        if at >= since - 2]
            raise AssertionError(f"{who}'s page did not show {state!r} for {key} within {LIVE_MS} ms of virsh "
                                 f"returning; timings so far: {timings}; its frames since: {received}") from exc
        timings.append(f"  {who} shows {state!r} after {(time.monotonic() - since) * 1000:.0f} ms")


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

    user_context = browser.new_context()
    timings: list[str] = []
    try:
        user_page = user_context.new_page()
        user_page.set_default_timeout(15000)
        admin, user = Viewer(page), Viewer(user_page)
        admin.record()
        user.record()
        log_in(admin.page, asgi_server, "admin", ADMIN_PASSWORD)
        log_in(user.page, asgi_server, "alice", USER_PASSWORD)
        # The admin's fleet filtered to our VMs: other VMs on the lab daemon (a benchmark's) may fill its
        # first page. The user's is the plain fleet page: it lists their one VM.
        open_fleet(admin.page, f"{asgi_server}/instances/?q={prefix}")
        open_fleet(user.page, f"{asgi_server}/instances/")
        both = {"admin": admin, "user": user}
        for viewer in both.values():
            expect(state_cell(viewer.page, a_key)).to_have_text("shut off")
        expect(state_cell(admin.page, b_key)).to_have_text("shut off")
        expect(user.page.locator(f'tr[data-key="{b_key}"]')).to_have_count(0)
        expect(user.page.locator("#fleet tbody tr[data-key]")).to_have_count(1)

        # A: both pages follow virsh, badges and buttons too (the user holds console and power grants).
        follow(both, a_key, "running", virsh_timed(timings, "start", a_name), timings)
        for viewer in both.values():
            offers(viewer.page, a_key, "state-running", ["console", "shutdown", "destroy"])
        follow(both, a_key, "shut off", virsh_timed(timings, "destroy", a_name), timings)
        for viewer in both.values():
            offers(viewer.page, a_key, "state-shut-off", ["start"])

        # B: the admin's page follows; the user's never hears of it.
        follow({"admin": admin}, b_key, "running", virsh_timed(timings, "start", b_name), timings)
        follow({"admin": admin}, b_key, "shut off", virsh_timed(timings, "destroy", b_name), timings)
        # A few more periodic reads (one a second), so that a frame leaking B would have arrived by now.
        user.page.wait_for_timeout(3000)
        save_screenshot(admin.page, "live-updates-admin.png")
        save_screenshot(user.page, "live-updates-user.png")

        for who, viewer in both.items():
            assert viewer.page.evaluate("window.__marker") == "same page", f"{who}'s page was reloaded"
            assert viewer.page.evaluate("document.documentElement.dataset.live") == "socket", f"{who}'s page polled"
        assert user.page.locator(f'tr[data-key="{b_key}"]').count() == 0
        shown = user.page.content()
        assert b_name not in shown
        assert b_uuid not in shown.lower()

        # The frames themselves: the user's socket carried A's changes and nothing at all about B.
        assert user.frames, "the user's page received no live frames"
        assert any(a_uuid in payload.lower() for payload in user.payloads), user.payloads
        leaks = [payload for payload in user.payloads if b_uuid in payload.lower() or b_name in payload]
        assert not leaks, f"the user's WebSocket carried B ({b_name} {b_uuid}): {leaks}"
        # ... while the admin's did carry B (the check above is not vacuous).
        assert any(b_uuid in payload.lower() for payload in admin.payloads)

        # The user's row buttons: Start posts the VM page's own action and comes back to the list; Force off
        # asks in a dialog first (static/js/confirm.js).
        user_row = user.page.locator(f'tr[data-key="{a_key}"]')
        user_row.locator("[data-act=start]").click()
        expect(user.page).to_have_url(f"{asgi_server}/instances/")
        offers(user.page, a_key, "state-running", ["console", "shutdown", "destroy"])
        assert doms["a"].isActive()
        user_row.locator("[data-act=destroy]").click()
        dialog = user.page.locator("dialog#confirm-dialog")
        expect(dialog).to_be_visible()
        dialog.locator("button[value=confirm]").click()
        offers(user.page, a_key, "state-shut-off", ["start"])
        assert not doms["a"].isActive()
        print("\n".join([*timings, f"frames received: admin {len(admin.frames)}, user {len(user.frames)}"]))
    finally:
        user_context.close()
