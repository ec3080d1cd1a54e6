"""Which machine a host is: the hypervisor's host UUID, recorded when the host is first reached.

Grants name VMs of one machine. When the same panel host later answers with another host UUID (its
address now reaches another machine, or an admin pointed it elsewhere), the new UUID is held in
`unconfirmed_uuid` and the host's grants are suspended (webkvm.permissions.suspended) until an admin
confirms the new machine on the host's page; answering as the recorded machine again lifts it.
"""

from __future__ import annotations

import contextlib
import logging

from hosts.models import Host
from virt.errors import Message, gettext_noop

log = logging.getLogger("webkvm.hosts")


def observe(host: Host, seen: str | None) -> None:
    """What a connection to `host` found it to be (None: unknown, which changes nothing)."""
    if not seen or (seen == host.hypervisor_uuid and not host.unconfirmed_uuid) or seen == host.unconfirmed_uuid:
        return
    rows = Host.objects.filter(pk=host.pk)
    if not host.hypervisor_uuid:
        rows.filter(hypervisor_uuid="").update(hypervisor_uuid=seen)
        log.info("host %s is the machine with host UUID %s", host.name, seen)
    elif seen == host.hypervisor_uuid:
        rows.update(unconfirmed_uuid="")
        log.info("host %s answers as its recorded machine %s again: its grants count again", host.name, seen)
    else:
        rows.update(unconfirmed_uuid=seen)
        log.warning("host %s answers as machine %s, not %s: its grants are suspended until an admin confirms",
                    host.name, seen, host.hypervisor_uuid)
    with contextlib.suppress(Host.DoesNotExist):  # removed meanwhile
        host.refresh_from_db(fields=["hypervisor_uuid", "unconfirmed_uuid"])


def confirm(host: Host) -> Message:
    """An admin's word that the host is now the machine it answers as; returns what changed, in words
    (English as str(), in the reader's language with webkvm.i18n.said)."""
    before, after = host.hypervisor_uuid, host.unconfirmed_uuid
    Host.objects.filter(pk=host.pk).update(hypervisor_uuid=after, unconfirmed_uuid="")
    host.hypervisor_uuid, host.unconfirmed_uuid = after, ""
    return Message(gettext_noop("machine confirmed: host UUID {before} -> {after}; the host's grants count again"),
                   before=before, after=after)
