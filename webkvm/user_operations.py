"""Every operation on the panel's users and their VM grants, declared once (webkvm/operations.py): name
(= audit action), label and permission (all admin). They change the panel's own records only."""

from __future__ import annotations

from webkvm.operations import ADMIN, Operation, declare

USER_CREATE = declare(Operation("user.create", "Create user", "user", ADMIN))
USER_UPDATE = declare(Operation("user.update", "Update user", "user", ADMIN))
USER_SET_PASSWORD = declare(Operation("user.set_password", "Set password", "user", ADMIN))
# A grant's audit record names the VM it opens (object type vm), as the audit log always has.
GRANT_SET = declare(Operation("grant.set", "Grant access", "vm", ADMIN))
GRANT_REVOKE = declare(Operation("grant.revoke", "Revoke access", "vm", ADMIN))
# Self-service quotas (instances/quotas.py): create or edit one, delete one.
QUOTA_SET = declare(Operation("quota.set", "Set quota", "quota", ADMIN))
QUOTA_DELETE = declare(Operation("quota.delete", "Delete quota", "quota", ADMIN))
