"""Django's formats for English (FORMAT_MODULE_PATH): a datetime rendered without a filter reads as `when` writes it."""

from webkvm.formats import DATETIME_FORMAT

DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
SHORT_DATE_FORMAT = DATE_FORMAT
SHORT_DATETIME_FORMAT = DATETIME_FORMAT
__all__ = ["DATETIME_FORMAT", "DATE_FORMAT", "SHORT_DATETIME_FORMAT", "SHORT_DATE_FORMAT", "TIME_FORMAT"]
