"""Every operation on virtual networks, declared once (webkvm/operations.py): name (= audit action),
label, permission (all admin) and how long the host may take."""

from __future__ import annotations

from django.utils.translation import gettext_noop

from webkvm.operations import ADMIN, Access, Operation, declare

# Starting dnsmasq or reading every VM's XML (who uses a network) can outlast one call's deadline.
CHANGE_TIMEOUT = 30.0


def _network(name: str, label: str, confirm: str = "") -> Operation:
    return declare(Operation(f"network.{name}", label, "network", ADMIN, timeout=CHANGE_TIMEOUT, confirm=confirm))


CREATE = _network("create", gettext_noop("Create network"))
# POST only, no confirmation: the route /<action>/ chooses one.
START = _network("start", gettext_noop("Start"))
AUTOSTART = _network("autostart", gettext_noop("Autostart"))
NO_AUTOSTART = _network("no-autostart", gettext_noop("No autostart"))
SIMPLE: dict[str, Operation] = {"start": START, "autostart": AUTOSTART, "no-autostart": NO_AUTOSTART}
ACTION = Access(ADMIN, by="action", choices=SIMPLE)
# Confirmed first (the VMs using the network lose it): the route /<action>/confirm/ chooses one.
STOP = _network("stop", gettext_noop("Stop"), confirm=gettext_noop("VMs using the network lose their connection."))
DELETE = _network("delete", gettext_noop("Delete"),
                  confirm=gettext_noop("The network's definition is removed from the host."))
CONFIRMED: dict[str, Operation] = {"stop": STOP, "delete": DELETE}
CONFIRM = Access(ADMIN, by="action", choices=CONFIRMED)
# Fixed addresses (DHCP host entries).
HOST_ADD = _network("host-add", gettext_noop("Add fixed address"))
HOST_REMOVE = _network("host-remove", gettext_noop("Remove fixed address"))
