"""The power and housekeeping actions on one VM, with the state checks libvirt needs.

Each action says which states allow it, so the page offers only what makes sense and a
request that races a state change gets a sentence instead of libvirt's error code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from virt import names
from virt.domains import state_name
from virt.errors import InvalidInput, InvalidState, Term, gettext_noop

RUNNING = frozenset({libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED})
PAUSED = frozenset({libvirt.VIR_DOMAIN_PAUSED})
OFF = frozenset({libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_NOSTATE})
ACTIVE = frozenset({*RUNNING, *PAUSED, libvirt.VIR_DOMAIN_SHUTDOWN, libvirt.VIR_DOMAIN_PMSUSPENDED})
ANY = frozenset({*ACTIVE, *OFF})


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    permission: str  # the grant it needs: power or change
    states: frozenset[int]
    run: Callable[[libvirt.virDomain], object]
    confirm: str = ""  # non-empty: data can be lost, the user must confirm this sentence
    timeout: float = 30.0  # seconds; starting or saving a large VM takes a while
    needs_managed_save: bool | None = None  # True: only with a saved state; False: only without
    needs_autostart: bool | None = None  # True: only while the VM starts with the host; False: only while not


def _start(dom: libvirt.virDomain) -> None:
    dom.create()  # restores a managed save image when there is one


ACTIONS: dict[str, Action] = {a.name: a for a in [
    Action("start", gettext_noop("Start"), "power", OFF, _start, needs_managed_save=False),
    Action("restore", gettext_noop("Restore saved state"), "power", OFF, _start, needs_managed_save=True),
    Action("shutdown", gettext_noop("Shut down"), "power", RUNNING, lambda d: d.shutdown()),
    Action("reboot", gettext_noop("Reboot"), "power", RUNNING, lambda d: d.reboot(0)),
    Action("suspend", gettext_noop("Pause"), "power", RUNNING, lambda d: d.suspend()),
    Action("resume", gettext_noop("Resume"), "power", PAUSED, lambda d: d.resume()),
    Action("managedsave", gettext_noop("Save state and stop"), "power", RUNNING | PAUSED, lambda d: d.managedSave(0),
           timeout=120.0),
    Action("reset", gettext_noop("Reset"), "power", RUNNING | PAUSED, lambda d: d.reset(0),
           confirm=gettext_noop("Reset restarts the VM at once, like the reset button: unsaved data in the guest is "
                                "lost.")),
    Action("destroy", gettext_noop("Force off"), "power", ACTIVE, lambda d: d.destroy(),
           confirm=gettext_noop("Force off cuts the power at once: unsaved data in the guest is lost.")),
    Action("discard-save", gettext_noop("Discard saved state"), "power", OFF, lambda d: d.managedSaveRemove(0),
           confirm=gettext_noop("The saved memory image is deleted: the next start boots the VM from scratch."),
           needs_managed_save=True),
    Action("autostart-on", gettext_noop("Start with the host"), "change", ANY, lambda d: d.setAutostart(1),
           needs_autostart=False),
    Action("autostart-off", gettext_noop("Do not start with the host"), "change", ANY, lambda d: d.setAutostart(0),
           needs_autostart=True),
]}


def available(state_code: int, managed_save: bool, autostart: bool | None = None) -> list[Action]:
    """The actions that make sense in this state, in the order the page shows them. The autostart switch is
    offered only to a caller that says whether the VM starts with the host (`autostart`): the one that applies."""
    return [a for a in ACTIONS.values() if state_code in a.states
            and (a.needs_managed_save is None or a.needs_managed_save == managed_save)
            and (a.needs_autostart is None or a.needs_autostart == autostart)]


def _check_state(dom: libvirt.virDomain, action: Action) -> None:
    code = int(dom.state()[0])
    if code not in action.states:
        raise InvalidState(gettext_noop("{name} is {state}: '{action}' is not possible now."), name=dom.name(),
                           state=state_name(code), action=Term(action.label))
    if action.needs_managed_save is not None:
        saved = bool(dom.hasManagedSaveImage(0))
        if saved != action.needs_managed_save:
            if saved:
                raise InvalidState(gettext_noop("{name} has a saved state: '{action}' is not possible now."),
                                   name=dom.name(), action=Term(action.label))
            raise InvalidState(gettext_noop("{name} has no saved state: '{action}' is not possible now."),
                               name=dom.name(), action=Term(action.label))


def perform(dom: libvirt.virDomain, name: str) -> None:
    """Run action `name` after checking the VM's current state."""
    action = ACTIONS.get(name)
    if action is None:
        raise InvalidInput(gettext_noop("Unknown action {action}."), action=repr(name))
    _check_state(dom, action)
    action.run(dom)


# ---- rename, title and description -----------------------------------------------------

MAX_TITLE, MAX_DESCRIPTION = 200, 4000


def rename(dom: libvirt.virDomain, new_name: str) -> None:
    """libvirt renames only inactive, persistent VMs; the name must be free on the host."""
    names.check_name(new_name)
    if int(dom.state()[0]) not in OFF:
        raise InvalidState(gettext_noop("{name} is running: shut it off before renaming it."), name=dom.name())
    if new_name == dom.name():
        return
    try:
        dom.connect().lookupByName(new_name)
    except libvirt.libvirtError:
        pass
    else:
        raise InvalidInput(gettext_noop("A VM named {name} already exists on this host."), name=new_name)
    dom.rename(new_name, 0)


def _clean_text(value: str, limit: int, what: str) -> str:
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(gettext_noop("{what} is limited to {limit} characters."), what=what, limit=limit)
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise InvalidInput(gettext_noop("{what} contains control characters."), what=what)
    return value


def describe(dom: libvirt.virDomain, title: str, description: str) -> None:
    """Set title (one line) and description; on a running VM both the live and the saved definition."""
    title = _clean_text(title, MAX_TITLE, Term(gettext_noop("The title")))
    if "\n" in title:
        raise InvalidInput(gettext_noop("The title is one line."))
    description = _clean_text(description, MAX_DESCRIPTION, Term(gettext_noop("The description")))
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if dom.isActive():
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    # libvirt removes the element when given None, so an emptied field leaves no trace.
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, title or None, None, None, flags)
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, description or None, None, None, flags)
