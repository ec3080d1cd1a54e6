"""The name rule of VMs and snapshots: one place for forms, the API and the virt layer alike.

Pool and volume names follow virt.storage_rules.check_name (they may hold '+', as images often do).
"""

from __future__ import annotations

import re

from virt.errors import InvalidInput, Term, gettext_noop

# libvirt takes almost any name; this one also makes a safe file name for the VM's disks and logs.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RULE = gettext_noop("Use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 63).")
_REFUSALS = {
    "VM": gettext_noop("VM name: Use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 63)."),
    "Snapshot": gettext_noop("Snapshot name: Use letters, digits, '.', '_' and '-', starting with a letter or digit "
                             "(at most 63)."),
}


def check_name(name: str, what: str = "VM") -> str:
    """`name` when it is a good VM or snapshot name; InvalidInput saying the rule otherwise."""
    if not NAME_RE.match(name):
        if what in _REFUSALS:
            raise InvalidInput(_REFUSALS[what])
        raise InvalidInput(gettext_noop("{what} name: {rule}"), what=what, rule=Term(RULE))
    return name
