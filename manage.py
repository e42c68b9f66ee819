#!/usr/bin/env python
"""Django's command-line utility for vpnadmin."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vpnadmin.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A bad environment variable is one line naming it, not a traceback.
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)
    except OperationalError as exc:
        reason = (str(exc).strip().splitlines() or ["no detail"])[-1]
        sys.stderr.write(f"Cannot use the database named by DATABASE_URL: {reason}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
