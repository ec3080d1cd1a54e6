"""What disk and NIC changes share: a VM's two definitions and how a device change reaches them.

A running VM has a live definition and (when persistent) a saved one, and they can differ: a
device added "at next boot" is only in the saved one, a device the guest has not released yet
only in the live one. Every change is made in each definition the device is in, so that the
running VM and the next boot both end up as the page says.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import libvirt

from virt.errors import InvalidInput, Said, Term, gettext_noop, reworded, translate
from virt.xml.base import XMLObject
from virt.xml.domain import Domain

LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
D = TypeVar("D", bound=XMLObject)


class FieldProblem(InvalidInput):
    """Input only the host's current state shows to be wrong (a MAC in use, a taken volume name).

    Nothing was changed; `field` names the form field the message belongs to."""

    def __init__(self, field: str, message: str, /, **params: object) -> None:
        super().__init__(message, **params)
        self.field = field

    @classmethod
    def of(cls, field: str, error: BaseException | Said | str) -> FieldProblem:
        """A rule's message (a BadValue, another error of ours) shown on `field`."""
        if isinstance(error, Said):
            return cls(field, error.template, **error.params)
        return cls(field, "{message}", message=str(error))


@dataclass(frozen=True)
class Definitions:
    name: str
    live: Domain | None  # None: the VM is shut off
    saved: Domain | None  # None: a transient VM (gone when it stops)

    @property
    def running(self) -> bool:
        return self.live is not None

    @property
    def current(self) -> Domain:
        """The definition that describes the VM best for display: the saved one, else the live one."""
        doc = self.saved or self.live
        assert doc is not None  # a VM always has at least one definition
        return doc

    @property
    def machine(self) -> str:
        return self.current.os.machine or ""

    def placement(self, in_live: bool, in_saved: bool) -> str:
        """Where a device is, in words for the page."""
        if self.live is None or self.saved is None or (in_live and in_saved):
            return Term(gettext_noop("attached"))
        return Term(gettext_noop("added at next boot")) if in_saved else Term(gettext_noop("removed at next boot"))


def definitions(dom: libvirt.virDomain) -> Definitions:
    active, persistent = bool(dom.isActive()), bool(dom.isPersistent())
    live = Domain.from_xml(dom.XMLDesc(0)) if active else None
    saved = Domain.from_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) if persistent else None
    return Definitions(str(dom.name()), live, saved)


def device_xml(device: XMLObject) -> str:
    """A device for detach: libvirt finds it by target or MAC; guest addresses and aliases may differ
    between the live and the saved definition, so they are left out."""
    element = copy.deepcopy(device.element)
    for node in [*element.findall("address"), *element.findall("alias")]:
        element.remove(node)
    return type(device)(element).to_xml()


def update_each(dom: libvirt.virDomain, defs: Definitions, find: Callable[[Domain], D | None],
                edit: Callable[[D], None]) -> tuple[bool, bool]:
    """Edit the device in each definition it is in and hand it back to libvirt, the running VM first.

    Each definition gets its own copy of the device (guest addresses differ between them), so
    nothing else in the element changes. Returns (changed live, changed saved)."""
    done = {LIVE: False, CONFIG: False}
    for doc, flag in ((defs.live, LIVE), (defs.saved, CONFIG)):
        device = find(doc) if doc is not None else None
        if device is None:
            continue
        edit(device)
        try:
            dom.updateDeviceFlags(device.to_xml(), flag)
        except libvirt.libvirtError as exc:
            error = translate(exc)
            if done[LIVE]:  # the running VM changed, the saved definition did not
                raise reworded(error, gettext_noop("The running VM was changed, but its saved definition was not "
                                                   "(it reverts at the next boot): {error}"), error=error) from None
            raise error from None
        done[flag] = True
    return done[LIVE], done[CONFIG]


def still_live(dom: libvirt.virDomain, find: Callable[[Domain], object | None]) -> bool:
    """After a live detach: is the device still in the running VM (the guest has not released it)?"""
    return bool(dom.isActive()) and find(Domain.from_xml(dom.XMLDesc(0))) is not None
