"""pytest plugin loaded before Django: the test run's own environment.

It sets defaults only, so a developer can still point the tests elsewhere. The database
is PostgreSQL (pytest-django creates `test_<name>`), and Redis keys carry a prefix of
this run alone, so other databases and keys on the machine are left alone.
"""

from __future__ import annotations

import os
import uuid

RUN_ID = os.environ.setdefault("VPNADMIN_TEST_RUN_ID", uuid.uuid4().hex[:10])
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vpnadmin")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("CACHE_KEY_PREFIX", f"vpnadmin-test-{RUN_ID}")
os.environ.setdefault("DOCKER_HOST", "unix:///var/run/docker.sock")
# No collectstatic in tests: serve from the source folders, without a manifest.
os.environ.setdefault("STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage")
os.environ.setdefault("WHITENOISE_USE_FINDERS", "1")
