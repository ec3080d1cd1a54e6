#!/usr/bin/env python3
"""Django's command-line utility for webkvm."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webkvm.settings")
    from django.core.management import execute_from_command_line

    from webkvm.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        sys.exit(f"webkvm: configuration error: {exc}")


if __name__ == "__main__":
    main()
