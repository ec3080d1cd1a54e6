"""Every operation on the panel's users, their VM grants and API tokens, declared once (webkvm/operations.py):
name (= audit action), label and permission. They change the panel's own records only."""

from __future__ import annotations

from django.utils.translation import gettext_noop

from webkvm.operations import ADMIN, LOGIN, Operation, declare

# Labels are English msgids (gettext_noop): a page or a message shows gettext(op.label) (operations.label_of).

USER_CREATE = declare(Operation("user.create", gettext_noop("Create user"), "user", ADMIN))
USER_UPDATE = declare(Operation("user.update", gettext_noop("Update user"), "user", ADMIN))
USER_SET_PASSWORD = declare(Operation("user.set_password", gettext_noop("Set password"), "user", ADMIN))
# A grant's audit record names the VM it opens (object type vm), as the audit log always has.
GRANT_SET = declare(Operation("grant.set", gettext_noop("Grant access"), "vm", ADMIN))
GRANT_REVOKE = declare(Operation("grant.revoke", gettext_noop("Revoke access"), "vm", ADMIN))
# Self-service quotas (instances/quotas.py): create or edit one, delete one.
QUOTA_SET = declare(Operation("quota.set", gettext_noop("Set quota"), "quota", ADMIN))
QUOTA_DELETE = declare(Operation("quota.delete", gettext_noop("Delete quota"), "quota", ADMIN))
# Personal API tokens (api/pages.py): anybody logged in makes their own; the token's user or an admin revokes one
# (the page checks whose it is). Pages only: a token never makes or revokes tokens, so a leaked one cannot outlive
# its expiry or its revocation through a token it made.
TOKEN_CREATE = declare(Operation("api.token.create", gettext_noop("Make API token"), "token", LOGIN, api=False))
TOKEN_REVOKE = declare(Operation("api.token.revoke", gettext_noop("Revoke API token"), "token", LOGIN, api=False))
