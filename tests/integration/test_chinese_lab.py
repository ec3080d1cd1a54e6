"""Issue 18's walk, on the real lab, as a Chinese-speaking admin: a VM paused and resumed, its migration
checked, run and followed to the end on lab host 2. Every page, message, job phase and result reads in
Chinese: no English left but names, units, technical terms (tests/unit/test_pages_translated.py) and
libvirt's own words."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from tests.integration.test_migrate_lab import conns, hosts, job_id, make_vm, vms, where  # noqa: F401 (fixtures)
from tests.unit.test_pages_translated import KEPT, WORD, english_left
from webkvm.models import UserLanguage

pytestmark = [pytest.mark.lab, pytest.mark.django_db(transaction=True)]
MESSAGES = re.compile(r'class="msg [^"]*" role="status">([^<]*)<')


def _chinese(texts: list[str], allowed: set[str]) -> None:
    for text in texts:
        assert re.search(r"[\u4e00-\u9fff]", text), f"not Chinese: {text!r}"
        left = english_left(f"<html><body><p>{text}</p></body></html>", allowed)
        assert not left, f"English left in {text!r}: {left}"


def test_a_chinese_admin_pauses_and_migrates_a_vm_reading_only_chinese(
        admin_client: Client, admin_user: Any, lab: dict[str, Any], conns, hosts: tuple[Host, Host],  # noqa: F811
        vms: list[str]) -> None:  # noqa: F811
    admin_client.post(reverse("language"), {"language": "zh-hans", "next": "/"})  # the user menu's choice
    assert UserLanguage.objects.get(user=admin_user).language == "zh-hans"
    source, target = hosts
    dom = make_vm(conns[0], lab, vms)
    uuid, name = dom.UUIDString(), dom.name()
    named = (source.name, target.name, name, admin_user.username)
    allowed = KEPT | {word for words in named for word in WORD.findall(words)}

    said = []
    for action in ("suspend", "resume"):
        response = admin_client.post(reverse("instances:action", args=[source.name, uuid, action]), {"confirm": "yes"},
                                     follow=True)
        said += MESSAGES.findall(response.content.decode())
    assert len(said) == 2 and dom.state()[0] == 1, said  # running again
    _chinese(said, allowed)
    # A refusal, in words of the panel's own (the panel knows the VM runs before libvirt would say so).
    refused = admin_client.post(reverse("instances:action", args=[source.name, uuid, "start"]), {"confirm": "yes"},
                                follow=True)
    [failed] = MESSAGES.findall(refused.content.decode())
    assert failed.startswith("启动：未完成："), failed  # noqa: RUF001 (Chinese punctuation)
    _chinese([failed], allowed)

    check = admin_client.get(reverse("instances:migrate", args=[source.name, uuid]), {"target": target.name})
    assert check.status_code == 200 and not english_left(check.content.decode(), allowed)
    job = job_id(admin_client.post(reverse("instances:migrate", args=[source.name, uuid]), {"target": target.name}))
    phases, end = set(), time.monotonic() + 90
    while True:
        data = admin_client.get(reverse("jobs:status", args=[job])).json()
        if data.get("phase"):
            phases.add(data["phase"])
        if not data["active"]:
            break
        assert time.monotonic() < end, data
        time.sleep(0.1)
    assert data["state"] == "done" and where(conns, uuid) == ["absent", "running"], data
    assert data["state_label"] == "已完成"
    _chinese([*phases, data["result"], data["summary"]] if data.get("summary") else [*phases, data["result"]], allowed)
    page = admin_client.get(reverse("jobs:detail", args=[job])).content.decode()
    assert '<html lang="zh-Hans"' in page and not english_left(page, allowed)
    vm_page = admin_client.get(reverse("instances:detail", args=[target.name, uuid])).content.decode()
    assert "运行中" in vm_page and not english_left(vm_page, allowed)
