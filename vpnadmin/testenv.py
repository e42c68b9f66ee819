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
# The second engine stands in for a remote host; containers the app creates carry the run's label.
os.environ.setdefault("DOCKER_LOCAL_SOCKETS", "unix:///var/run/docker.sock,unix:///var/run/vpnadmin-docker2.sock")
os.environ.setdefault("DOCKER_EXTRA_LABELS", f"vpnadmin.test-run={RUN_ID}")
os.environ.setdefault("DOCKER_NETWORK_MODE", "none")
# No collectstatic in tests: serve from the source folders, without a manifest.
os.environ.setdefault("STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage")
os.environ.setdefault("WHITENOISE_USE_FINDERS", "1")
