"""The user pages (admins): password rules shown before the first attempt, the grant form's VM picker and its
errors in words, and "Share…" from a VM's own page, which makes the same grant through the same code."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import password_validation
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from hosts.models import Host
from tests.conftest import DB_01_UUID, WEB_01_UUID
from webkvm.models import AuditEvent, VMGrant

pytestmark = pytest.mark.django_db


def test_the_new_user_page_shows_the_password_rules_before_the_first_attempt(admin_client: Client) -> None:
    html = admin_client.get(reverse("users:create")).content.decode()
    rules = password_validation.password_validators_help_texts()
    assert len(rules) == 3  # settings.AUTH_PASSWORD_VALIDATORS
    for rule in rules:
        assert escape(rule) in html, rule
    assert 'class="field-error"' not in html


def test_the_grant_form_lists_the_hosts_vms_with_the_only_host_chosen(admin_client: Client, outsider,
                                                                        test_host: Host) -> None:
    html = admin_client.get(reverse("users:detail", args=[outsider.pk])).content.decode()
    chosen = re.search(r'<select name="host"[^>]*>.*?</select>', html, re.S)
    assert chosen and re.search(rf'<option value="{test_host.pk}" selected>testhost</option>', chosen.group(0))
    listed = re.search(rf'<datalist id="vms-{test_host.pk}">(.*?)</datalist>', html, re.S)
    assert listed, "no VM list for the host"
    assert re.findall(r'<option value="([^"]*)"', listed.group(1)) == sorted(
        ["web-01", "db-01", escape("<img src=x onerror=alert(1)>")])
    assert re.search(rf'<input[^>]*name="vm"[^>]*list="vms-{test_host.pk}"', html)


# The grant form's VMs that do not exist, and its words for them (the API sends them too: test_api_people.py).
UNKNOWN_VMS = [
    ("no-such-vm", "There is no VM named “no-such-vm” on testhost."),
    ("99999999-9999-4999-8999-999999999999", "There is no VM with the UUID 99999999-9999-4999-8999-999999999999 on "
                                              "testhost."),
]


@pytest.mark.parametrize(("vm", "error"), UNKNOWN_VMS)
def test_an_unknown_vm_is_a_field_error_in_words(admin_client: Client, outsider, test_host: Host, vm: str,
                                                 error: str) -> None:
    url = reverse("users:detail", args=[outsider.pk])
    page = admin_client.post(url, {"form": "grant", "host": test_host.pk, "vm": vm, "can_power": "on"})
    assert page.status_code == 200
    assert page.context["grant"].errors["vm"] == [error]
    html = page.content.decode()
    assert "Domain not found" not in html and "libvirt" not in html.lower().replace("libvirt's", "")
    assert not VMGrant.objects.exists()


def test_share_from_the_vm_page_makes_the_grant_and_its_audit_record(admin_client: Client, outsider,
                                                                        test_host: Host) -> None:
    url = reverse("instances:share", args=[test_host.name, DB_01_UUID])
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<option value="{outsider.pk}">mallory</option>' in html and "db-01" in html
    done = admin_client.post(url, {"user": outsider.pk, "can_console": "on", "can_power": "on"})
    assert done.status_code == 302 and done["Location"] == reverse("instances:detail",
                                                                   args=[test_host.name, DB_01_UUID])
    grant = VMGrant.objects.get(user=outsider)
    assert (str(grant.vm_uuid), grant.vm_name, grant.host) == (DB_01_UUID, "db-01", test_host)
    assert grant.permissions() == ["view", "console", "power"]
    event = AuditEvent.objects.get(action="grant.set")
    assert (event.result, event.object_name, event.host_name) == ("ok", "db-01", "testhost")
    assert "user=mallory" in event.detail
    # The same grant as the user page makes: sharing again updates it, never a second one.
    admin_client.post(url, {"user": outsider.pk, "can_change": "on"})
    assert VMGrant.objects.get(user=outsider).permissions() == ["view", "change"]


def test_share_needs_a_user(admin_client: Client, test_host: Host) -> None:
    page = admin_client.post(reverse("instances:share", args=[test_host.name, WEB_01_UUID]), {"can_power": "on"})
    assert page.status_code == 200 and page.context["form"].errors["user"]
    assert not VMGrant.objects.exists()
