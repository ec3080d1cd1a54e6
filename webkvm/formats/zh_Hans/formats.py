"""Django's formats for Simplified Chinese (FORMAT_MODULE_PATH): instants read as in English, '2026-12-02 13:51:07 UTC'
(unambiguous, and as `when` writes them); what is not set here (numbers: no thousands separator, grouping by 4;
the input formats) comes from Django's own zh_Hans formats."""

from webkvm.formats import DATETIME_FORMAT

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
SHORT_DATE_FORMAT = DATE_FORMAT
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
__all__ = ["DATETIME_FORMAT", "DATE_FORMAT", "SHORT_DATETIME_FORMAT", "SHORT_DATE_FORMAT", "TIME_FORMAT"]
