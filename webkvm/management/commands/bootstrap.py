"""First-run set-up: the panel's ssh identity, the first admin, and a first host.

Idempotent: a second run changes nothing and prints nothing secret.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

import libvirt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from hosts import services
from hosts.models import Host
from virt.connections import open_connection, start_event_loop
from virt.uri import ConnectionSpec, Transport

LOCAL_SOCKET = "/run/libvirt/libvirt-sock"


def local_libvirt_answers() -> bool:
    if not os.path.exists(LOCAL_SOCKET):
        return False
    start_event_loop()
    try:
        conn = open_connection(ConnectionSpec(Transport.LOCAL, path="system"))
    except libvirt.libvirtError:
        return False
    try:
        conn.getLibVersion()
        return True
    finally:
        conn.close()


class Command(BaseCommand):
    help = "Create the panel's ssh key, the first admin account and a first host (only what is missing)."

    def handle(self, *args: Any, **options: Any) -> None:
        services.sync_known_hosts()
        self._first_admin()
        self._first_host()

    def _first_admin(self) -> None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return
        password = os.environ.get("WEBKVM_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        username = os.environ.get("WEBKVM_ADMIN_USER", "admin")
        users.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(self.style.WARNING(
                f"Created admin account '{username}' with password: {password}\n"
                "This password is shown only once: note it now."))
        else:
            self.stdout.write(f"Created admin account '{username}' with the password from WEBKVM_ADMIN_PASSWORD.")

    def _first_host(self) -> None:
        if Host.objects.exists():
            return
        if local_libvirt_answers():
            Host.objects.create(name="localhost", transport=Transport.LOCAL, path="system")
            self.stdout.write("Added host 'localhost' (qemu:///system).")
        elif settings.WEBKVM_TEST_DRIVER:
            Host.objects.create(name="demo", transport=Transport.TEST, path="default")
            self.stdout.write("No local libvirt answered: added host 'demo' on libvirt's test driver (test:///default).")
        else:
            self.stdout.write("No local libvirt answered: add a host in the panel (Hosts), or run with "
                              "WEBKVM_TEST_DRIVER=true for a demo host on libvirt's test driver.")
