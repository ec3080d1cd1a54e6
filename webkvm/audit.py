"""Writing audit records: one per action, whatever its outcome; repeated refusals counted on one row."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from webkvm.models import AuditEvent, AuditResult, VMPermission

# Identical refusals within this long of a row's first one add to its `repeats` instead of a row each, so
# what anonymous clients (or anybody retrying) can make the table store is one row per kind of refusal,
# client and window.
REPEAT_WINDOW = timedelta(hours=1)


def is_refusal(action: str, result: str) -> bool:
    """Refusals are counted, not listed: denied requests, refused consoles and failed log-ins."""
    return result == AuditResult.DENIED or (action == "login" and result == AuditResult.FAILED)


def record(request: HttpRequest | None, action: str, *, object_type: str, object_name: str = "",
           host_name: str = "", result: str = AuditResult.OK, detail: str = "",
           user: Any = None, remote_addr: str | None = None, duration_ms: int | None = None) -> AuditEvent:
    """`user` and `remote_addr` stand in for the request where there is none (the console proxy)."""
    if request is not None:
        user = getattr(request, "user", None)
        remote_addr = request.META.get("REMOTE_ADDR")
        # Set by the API's views (api/views.py): "through the API, token NAME" (or "..., session").
        if via := getattr(request, "webkvm_via", ""):
            detail = f"{detail} ({via})" if detail else via
    authenticated = bool(user is not None and user.is_authenticated)
    fields: dict[str, Any] = {
        "user": user if authenticated else None,
        "username": user.get_username() if authenticated else "",
        "action": action,
        "object_type": object_type,
        "object_name": object_name[:255],
        "host_name": host_name[:100],
        "result": result,
        "detail": detail[:4000],
        "remote_addr": remote_addr or None,
    }
    if is_refusal(action, result):
        now = timezone.now()
        with transaction.atomic():
            same = AuditEvent.objects.filter(**fields, time__gte=now - REPEAT_WINDOW).order_by("-time", "-id")
            earlier = same.select_for_update().first()
            if earlier is not None:
                AuditEvent.objects.filter(pk=earlier.pk).update(repeats=F("repeats") + 1, last_time=now)
                earlier.refresh_from_db(fields=["repeats", "last_time"])
                return earlier
    return AuditEvent.objects.create(**fields, duration_ms=duration_ms)


# --- how the audit page names what was done: the stored codes stay, the page shows these words -------------

# Every action the panel audits (the operations of webkvm/operations.py and each app's operations module, the
# job kinds, and the few recorded directly), named as the audit page shows it.
ACTIONS: dict[str, Promise] = {
    "login": _("Log in"),
    "logout": _("Log out"),
    "api.token.create": _("Make API token"),
    "api.token.revoke": _("Revoke API token"),
    "console.ticket": _("Open console (ticket)"),
    "console.open": _("Open console"),
    "console.close": _("Close console"),
    "console.refused": _("Console refused"),
    "console.takeover": _("Take over serial console"),
    "user.create": _("Create user"),
    "user.update": _("Update user"),
    "user.set_password": _("Set password"),
    "grant.set": _("Grant access"),
    "grant.revoke": _("Revoke access"),
    "quota.set": _("Set quota"),
    "quota.delete": _("Delete quota"),
    "flavor.create": _("Create flavor"),
    "flavor.update": _("Edit flavor"),
    "flavor.delete": _("Delete flavor"),
    "host.create": _("Add host"),
    "host.update": _("Edit host"),
    "host.delete": _("Remove host"),
    "host.test": _("Test connection"),
    "host.confirm_machine": _("Confirm the new machine"),
    "host.share": _("Open to users"),
    "host.unshare": _("Close to users"),
    "host.evacuate": _("Evacuate host"),
    "network.create": _("Create network"),
    "network.start": _("Start network"),
    "network.stop": _("Stop network"),
    "network.delete": _("Delete network"),
    "network.autostart": _("Autostart network"),
    "network.no-autostart": _("No autostart for network"),
    "network.host-add": _("Add fixed address"),
    "network.host-remove": _("Remove fixed address"),
    "pool.create": _("Create pool"),
    "pool.delete": _("Delete pool"),
    "pool.build": _("Build pool"),
    "pool.start": _("Start pool"),
    "pool.stop": _("Stop pool"),
    "pool.refresh": _("Refresh pool"),
    "pool.autostart": _("Autostart pool"),
    "pool.no-autostart": _("No autostart for pool"),
    "volume.create": _("Create volume"),
    "volume.clone": _("Clone volume"),
    "volume.wipe": _("Wipe volume"),
    "volume.resize": _("Grow volume"),
    "volume.delete": _("Delete volume"),
    "volume.upload": _("Upload volume"),
    "volume.download": _("Download volume"),
    "library.set": _("Set image library"),
    "image.import": _("Import image"),
    "image.update": _("Edit image"),
    "image.delete": _("Delete image"),
    "vm.create": _("Create VM"),
    "vm.create-from-image": _("Create VM from image"),
    "vm.create-own": _("Create my VM from an image"),
    "vm.start": _("Start VM"),
    "vm.shutdown": _("Shut down VM"),
    "vm.reboot": _("Reboot VM"),
    "vm.reset": _("Reset VM"),
    "vm.destroy": _("Force off VM"),
    "vm.suspend": _("Pause VM"),
    "vm.resume": _("Resume VM"),
    "vm.managedsave": _("Save state and stop"),
    "vm.restore": _("Restore saved state"),
    "vm.discard-save": _("Discard saved state"),
    "vm.autostart-on": _("Start with the host"),
    "vm.autostart-off": _("Do not start with the host"),
    "vm.rename": _("Rename VM"),
    "vm.describe": _("Title and description"),
    "vm.delete": _("Delete VM"),
    "vm.clone": _("Clone VM"),
    "vm.migrate": _("Migrate VM"),
    "vm.migrate-many": _("Migrate VMs"),
    "vm.disk.attach": _("Attach disk"),
    "vm.disk.detach": _("Detach disk"),
    "vm.cdrom.add": _("Add CD-ROM drive"),
    "vm.cdrom.remove": _("Remove CD-ROM drive"),
    "vm.cdrom.insert": _("Insert ISO"),
    "vm.cdrom.eject": _("Eject ISO"),
    "vm.nic.add": _("Add NIC"),
    "vm.nic.remove": _("Remove NIC"),
    "vm.nic.source": _("Change NIC source"),
    "vm.nic.link": _("Set NIC link"),
    "vm.resize": _("Resize VM"),
    "vm.boot": _("Boot settings"),
    "vm.vnc": _("VNC settings"),
    "vm.xml.edit": _("Edit XML"),
    "vm.xml.rollback": _("Roll back XML"),
    "vm.snapshot.create": _("Take snapshot"),
    "vm.snapshot.revert": _("Revert to snapshot"),
    "vm.snapshot.delete": _("Delete snapshot"),
}
DENIED_PREFIX = "denied:"

# The kinds of object an audit record names (object_type), as the audit page shows them.
OBJECT_TYPES: dict[str, Promise] = {
    "vm": _("VM"), "host": _("host"), "pool": _("storage pool"), "volume": _("volume"), "network": _("network"),
    "flavor": _("flavor"), "user": _("user"), "job": _("job"), "quota": _("quota"), "image": _("image"),
    "token": _("API token"),
}


def action_words(action: str) -> str:
    """An audit action in words of the active language ("vm.start": "Start VM"); an unknown code as it is."""
    if action.startswith(DENIED_PREFIX):
        permission = action[len(DENIED_PREFIX):]
        what = (gettext("admin") if permission == "admin" else
                str(VMPermission(permission).label) if permission in VMPermission.values else permission)
        return gettext("Refused (no %(permission)s permission)") % {"permission": what}
    label = ACTIONS.get(action)
    return str(label) if label is not None else action


def object_type_words(object_type: str) -> str:
    label = OBJECT_TYPES.get(object_type)
    return str(label) if label is not None else object_type


def result_words(result: str) -> str:
    return str(AuditResult(result).label) if result in AuditResult.values else result
