"""The server log's line for a refused request (403): who, method, path and why, without a traceback.

Django logs every PermissionDenied through `django.request` with the exception attached, so each refusal
wrote a full traceback; the refusal is expected behaviour and the audit log keeps the rest."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied


class RefusalLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if getattr(record, "status_code", None) != 403 or not isinstance(exc, PermissionDenied):
            return True
        request = getattr(record, "request", None)
        user = getattr(request, "user", None)
        who = getattr(user, "username", "") or "anonymous"
        record.msg = "refused %s %s %s: %s"
        record.args = (who, getattr(request, "method", "?"), getattr(request, "path", "?"),
                       str(exc) or "not allowed")
        record.exc_info = None
        record.exc_text = None
        return True
