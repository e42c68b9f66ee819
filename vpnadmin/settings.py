"""vpnadmin settings: one module, read from the environment.

One code path: PostgreSQL and Redis everywhere. DATABASE_URL and REDIS_URL name the
servers; with neither set they are the embedded engines `make run` starts under var/
(vpnadmin/embedded.py), reached over unix sockets. See README.md for every variable.
"""

from __future__ import annotations

from pathlib import Path

from vpnadmin.embedded import Layout
from vpnadmin.env import (
    database_from_url,
    envbool,
    envfloat,
    envint,
    envlist,
    envsecret,
    envstr,
    persistent_encryption_keys,
    persistent_secret_key,
    redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("VPNADMIN_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DEBUG", False)
SECRET_KEY = persistent_secret_key(VAR_DIR)
# Secrets at rest (vpnadmin.crypto): Fernet keys, newest first, and where they came from.
VPNADMIN_ENCRYPTION_KEYS, VPNADMIN_ENCRYPTION_KEYS_SOURCE = persistent_encryption_keys(VAR_DIR)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "template_partials",
    "vpnadmin",
    "users",
    "containers",
    "perf",
]

MIDDLEWARE = [
    # Counts and times every request for /metrics; first, so the whole stack is timed.
    "perf.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every URL needs a login unless its view is marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A stored secret that no configured key opens: a 503 naming the key set, not a 500.
    "vpnadmin.crypto.DecryptionErrorMiddleware",
]

ROOT_URLCONF = "vpnadmin.urls"
WSGI_APPLICATION = "vpnadmin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

# --- database ----------------------------------------------------------------------
# The embedded engines' addresses follow from VAR_DIR alone, so a `manage.py` command run
# beside `make run` (which also exports them) reaches the same servers.
EMBEDDED = Layout.for_var_dir(VAR_DIR)
DATABASES = {"default": database_from_url("DATABASE_URL", EMBEDDED.database_url())}
DATABASES["default"].setdefault("OPTIONS", {})
# Fail fast when PostgreSQL is unreachable instead of hanging a worker.
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", envint("DATABASE_CONNECT_TIMEOUT", 3, minimum=1))
DATABASES["default"]["TEST"] = {"NAME": envstr("TEST_DATABASE_NAME", f"test_{DATABASES['default']['NAME']}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache -------------------------------------------------------------------------
REDIS_URL = redis_url("REDIS_URL")
CACHE_KEY_PREFIX = envstr("CACHE_KEY_PREFIX", "vpnadmin")
# Explicit socket timeouts: a hanging Redis must cost a page milliseconds, far below
# gunicorn's worker timeout, never the whole request.
CACHE_SOCKET_TIMEOUT = envfloat("CACHE_SOCKET_TIMEOUT", 0.25)
# One cache everywhere: django-redis extended with tags (perf/cache/). With no REDIS_URL
# it is the zero-config run's embedded Redis, on a unix socket under var/.
CACHES = {
    "default": {
        "BACKEND": "perf.cache.RedisTaggedCache",
        "LOCATION": REDIS_URL or EMBEDDED.redis_url(),
        "KEY_PREFIX": CACHE_KEY_PREFIX,
        "TIMEOUT": 300,
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": CACHE_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": CACHE_SOCKET_TIMEOUT,
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_SCAN_ITERSIZE = 1000
# What `manage.py warmcache` preloads: dotted paths of `fn(progress) -> int` (entries warmed).
CACHE_WARMERS = envlist("CACHE_WARMERS", ["users.selectors.warm_hot_reads"])

# Sessions live in the database: a Redis outage must not log everybody out.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Docker engines ----------------------------------------------------------------
# The engine configured from the environment; more hosts are added in the app.
DOCKER_HOST = envstr("DOCKER_HOST", "unix:///var/run/docker.sock")
DOCKER_TIMEOUT = envfloat("DOCKER_TIMEOUT", 10.0)
# Unix sockets a DockerHost may use; any other unix path is refused (tests add a second engine).
DOCKER_LOCAL_SOCKETS = envlist("DOCKER_LOCAL_SOCKETS", [DOCKER_HOST] if DOCKER_HOST.startswith("unix://") else [])
DOCKER_NETWORK_MODE = envstr("DOCKER_NETWORK_MODE", "bridge")  # network of the default local host's containers
DOCKER_MAX_CONCURRENT = envint("DOCKER_MAX_CONCURRENT", 32, minimum=1)  # engine calls at once, all hosts
DOCKER_STOP_TIMEOUT = envint("DOCKER_STOP_TIMEOUT", 10, minimum=0)  # seconds a container gets to stop
# "k=v,k2=v2": labels added to every container the app creates (tests tag their run).
DOCKER_EXTRA_LABELS = dict(item.split("=", 1) for item in envlist("DOCKER_EXTRA_LABELS", []) if "=" in item)
CONTAINERS_BACKGROUND_THRESHOLD = envint("CONTAINERS_BACKGROUND_THRESHOLD", 5, minimum=0)
CONTAINERS_STATS_INTERVAL = envfloat("CONTAINERS_STATS_INTERVAL", 5.0)
CONTAINERS_JOB_STALE_AFTER = envint("CONTAINERS_JOB_STALE_AFTER", 300, minimum=60)  # silent job = crashed

# --- auth --------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- security ----------------------------------------------------------------------
# Behind TLS (VPNADMIN_HTTPS=1) cookies are secure and HSTS is on; `check --deploy`
# is clean with these. The zero-config run serves plain HTTP on 127.0.0.1.
HTTPS = envbool("VPNADMIN_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and envbool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_PROXY", False) else None
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

# --- i18n, static ------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": envstr("STATICFILES_BACKEND", "whitenoise.storage.CompressedManifestStaticFilesStorage"),
    },
}

# Bulk selections ("all matching this filter") travel as a filter, not as ids; pages
# that post many ids use one field holding a list.
DATA_UPLOAD_MAX_NUMBER_FIELDS = envint("DATA_UPLOAD_MAX_NUMBER_FIELDS", 10000, minimum=1000)
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = envint("FILE_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024, minimum=1024)

# --- VPN users ---------------------------------------------------------------------
USERS_IMPORT_MAX_BYTES = envint("USERS_IMPORT_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)  # one CSV upload
USERS_IMPORT_MAX_ROWS = envint("USERS_IMPORT_MAX_ROWS", 100_000, minimum=1)  # rows in one page upload
USERS_CACHE_READS = envbool("USERS_CACHE_READS", True)  # off: lists and stats read PostgreSQL every time

# --- health ------------------------------------------------------------------------
HEALTH_CHECK_TIMEOUT = envfloat("HEALTH_CHECK_TIMEOUT", 1.5)

# --- memory profiler and metrics (perf) --------------------------------------------
# Read by perf.profiler.ProfilerConfig, which checks every value (see README).
PROFILER = {
    "sampler": envbool("MEMORY_SAMPLER", True),  # the light sampler in every gunicorn worker
    "interval_s": envfloat("MEMORY_SAMPLE_INTERVAL", 30.0),
    "tracemalloc_window_minutes": envint("MEMORY_TRACEMALLOC_MINUTES", 15, minimum=1),
    "leak_threshold_mb": envfloat("MEMORY_LEAK_THRESHOLD_MB", 20.0),  # MB per hour of sustained growth
    "window": envint("MEMORY_WINDOW", 30, minimum=3),  # snapshots in the trend
    "max_snapshots": envint("MEMORY_MAX_SNAPSHOTS", 240, minimum=3),  # kept per process
    "max_processes": envint("MEMORY_MAX_PROCESSES", 64, minimum=1),
}
# Set: /metrics wants `Authorization: Bearer <token>`; unset: a logged-in staff member.
METRICS_TOKEN = envsecret("METRICS_TOKEN")

# --- logging -----------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Connection pools log every retry at DEBUG; keep them quiet.
        "urllib3": {"level": "WARNING"},
        "docker": {"level": "WARNING"},
    },
}

# Serve static files straight from the source folders (tests, development).
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", DEBUG)
if WHITENOISE_USE_FINDERS:
    # WhiteNoise also scans STATIC_ROOT and warns when it is missing before collectstatic.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
