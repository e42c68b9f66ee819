"""WSGI entry point used by gunicorn."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vpnadmin.settings")

try:
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    # One line naming the variable; exit code 3 tells gunicorn's master to stop rather
    # than restart workers that can never boot.
    sys.stderr.write(f"Configuration error: {exc}\n")
    sys.exit(3)
