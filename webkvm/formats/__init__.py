"""The one way the panel writes an instant: '2026-12-02 13:51:07 UTC', in the panel's time zone (TIME_ZONE).

Templates use the `when` filter (webkvm/templatetags/formats.py); a datetime rendered bare uses the same
format through FORMAT_MODULE_PATH (webkvm/formats/en/formats.py); messages built in Python call `when`;
a graph's time axis uses webkvmFormat.clock (static/js/format.js), in the same zone. Sizes: virt.xml.codecs.iec.
"""

from __future__ import annotations

import datetime

from django.utils import dateformat, timezone

DATETIME_FORMAT = "Y-m-d H:i:s T"  # Django's date-format letters


def when(value: datetime.datetime | float | None, default: str = "") -> str:
    """A datetime (aware or naive in TIME_ZONE) or a Unix time, as the panel writes instants; `default` for None."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    elif not isinstance(value, datetime.datetime):
        return str(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    return dateformat.format(timezone.localtime(value), DATETIME_FORMAT)
