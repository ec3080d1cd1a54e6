"""The host and network pages in the reader's language: form errors of the panel's own rules, messages of what
was done, and the words for a host that cannot be read (names, addresses and libvirt's words stay as they are)."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from hosts.models import Host
from webkvm.models import UserLanguage

pytestmark = pytest.mark.django_db


@pytest.fixture
def zh_admin(admin_user) -> Client:
    UserLanguage.objects.create(user=admin_user, language="zh-hans")
    client = Client()
    client.force_login(admin_user)  # the language chosen is copied into the session at log-in
    return client


def test_host_form_errors_in_chinese(zh_admin: Client, test_host: Host) -> None:
    page = zh_admin.post(reverse("hosts:create"), {"name": "testhost", "transport": "ssh", "path": "nowhere",
                                                   "username": ""}).content.decode()
    assert "已有同名的宿主机。" in page  # the name is taken
    assert "请选择 system 或 session。" in page
    assert "远程宿主机需要主机名或地址。" in page
    assert Host.objects.count() == 1


def test_network_messages_in_chinese(zh_admin: Client, test_host: Host) -> None:
    response = zh_admin.post(reverse("networks:action", args=["testhost", "lan", "no-autostart"]))
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["网络 lan 不再开机自动启动。"]
    page = zh_admin.post(reverse("networks:create", args=["testhost"]), {
        "name": "new", "mode": "nat", "hosts": "52:54:00:00:00:01 nowhere 10.0.0.1 10.0.0.2"}).content.decode()
    assert "第 1 行：每行只能有一个 IP 地址。" in page  # noqa: RUF001


def test_unreachable_host_in_chinese(zh_admin: Client, test_host: Host) -> None:
    Host.objects.create(name="gone", transport="tcp", hostname="127.0.0.1", port=9, insecure_tcp=True)
    page = zh_admin.get(reverse("hosts:list")).content.decode()
    row = page[page.index('data-host="gone"'):page.index('data-host="testhost"')]
    assert "离线" in row and "无法连接：" in row  # noqa: RUF001
