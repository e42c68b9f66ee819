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
    # The admin site that audits every add, change and delete (vpnadmin/admin_site.py).
    "vpnadmin.apps.AuditedAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "axes",
    "csp",
    "template_partials",
    # The task queue on the same PostgreSQL (`manage.py procrastinate worker`); before the
    # apps whose tasks modules it discovers.
    "procrastinate.contrib.django",
    "vpnadmin",
    "users",
    "containers",
    "perf",
]

MIDDLEWARE = [
    # Counts and times every request for /metrics; first, so the whole stack is timed.
    "perf.memory.metrics.RequestMetricsMiddleware",
    # The request id and client address every audit entry and log line carries.
    "vpnadmin.requestctx.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Warm /sub/ polls of VPN apps answered from the cache here: they need no session,
    # user, CSRF or messages (everything else under /sub/ goes on down the stack).
    "users.subscriptions.middleware.SubscriptionFastPathMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Ends a session idle for SESSION_IDLE_TIMEOUT, or one whose user was disabled.
    "vpnadmin.sessions.SessionGuardMiddleware",
    # Every URL needs a login unless its view is marked @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Section permissions (dashboard, performance) and the branded error pages.
    "vpnadmin.access.SectionPermissionMiddleware",
    "vpnadmin.access.DatabaseUnavailableMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A stored secret that no configured key opens: a 503 naming the key set, not a 500.
    "vpnadmin.crypto.DecryptionErrorMiddleware",
    # Last, as django-axes asks: turns a lockout into the 429 page.
    "axes.middleware.AxesMiddleware",
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
# Every statement is bounded on the connection itself, so no bulk write or read path can
# forget it: gthread's --timeout does not end a request, a statement timeout does. Web
# workers (gunicorn sets VPNADMIN_ROLE=web) get the short one; queue workers, commands,
# tests and benchmarks the long one.
VPNADMIN_ROLE = envstr("VPNADMIN_ROLE", "")
DATABASE_STATEMENT_TIMEOUT_MS = envint("DATABASE_STATEMENT_TIMEOUT_MS", 30_000, minimum=100)
DATABASE_WORKER_STATEMENT_TIMEOUT_MS = envint("DATABASE_WORKER_STATEMENT_TIMEOUT_MS", 3_600_000, minimum=100)
_timeout_ms = DATABASE_STATEMENT_TIMEOUT_MS if VPNADMIN_ROLE == "web" else DATABASE_WORKER_STATEMENT_TIMEOUT_MS
DATABASES["default"]["OPTIONS"]["options"] = f"-c statement_timeout={_timeout_ms}"

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
            # After a connection failure, skip Redis for 2 s (a hanging Redis costs a page
            # one socket timeout per interval), and log the outage once per 30 s with a count.
            "RETRY_INTERVAL": 2.0,
            "FAILURE_LOG_INTERVAL": 30.0,
            # Shared hit/miss/latency counters for /perf/cache/ and /metrics.
            "METRICS": True,
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
# The creation policy's allow-lists (containers/policy.py): binds only from under these
# host directories, images only from these registries/namespaces ("ns/" = all under it).
CONTAINERS_BIND_ROOTS = envlist("CONTAINERS_BIND_ROOTS", [str(VAR_DIR / "server-data")])
CONTAINERS_IMAGE_PREFIXES = envlist("CONTAINERS_IMAGE_PREFIXES", ["vpnadmin/", "vpnadmin-test/"])
CONTAINERS_BACKGROUND_THRESHOLD = envint("CONTAINERS_BACKGROUND_THRESHOLD", 5, minimum=0)
CONTAINERS_STATS_INTERVAL = envfloat("CONTAINERS_STATS_INTERVAL", 5.0)
CONTAINERS_SYNC_INTERVAL = envfloat("CONTAINERS_SYNC_INTERVAL", 30.0)  # reconcile with the engines (periodic)
# The VPN data plane (containers/sync.py). An apply waits this long after the first users
# write so a burst of writes costs each server one apply; 0 turns a periodic pass off.
VPN_APPLY_DEBOUNCE = envfloat("VPN_APPLY_DEBOUNCE", 1.0)
VPN_APPLY_RETRIES = envint("VPN_APPLY_RETRIES", 5, minimum=0)
VPN_POLL_INTERVAL = envfloat("VPN_POLL_INTERVAL", 60.0)  # per-user traffic counters
VPN_CONVERGE_INTERVAL = envfloat("VPN_CONVERGE_INTERVAL", 60.0)  # re-apply servers left pending
VPN_RESET_INTERVAL = envfloat("VPN_RESET_INTERVAL", 3600.0)  # daily/weekly/… traffic resets
# Decrypted credentials a queue worker keeps between applies (containers/sync.py; 0: none).
VPN_CREDENTIAL_CACHE_SIZE = envint("VPN_CREDENTIAL_CACHE_SIZE", 50_000, minimum=0)

# --- task queue (procrastinate, `manage.py procrastinate worker`) ------------------
# Every worker listens on every queue; a worker killed mid-job is found by its missing
# heartbeat and its jobs are retried by a periodic task (vpnadmin/queue.py).
QUEUE_CONCURRENCY = envint("QUEUE_CONCURRENCY", 4, minimum=1)  # jobs at once per worker (threads)
QUEUE_HEARTBEAT_INTERVAL = envfloat("QUEUE_HEARTBEAT_INTERVAL", 10.0)
QUEUE_STALLED_AFTER = envfloat("QUEUE_STALLED_AFTER", 30.0)  # a worker silent this long is dead
PROCRASTINATE_IMPORT_PATHS = ["vpnadmin.queue"]
PROCRASTINATE_WORKER_DEFAULTS = {
    "concurrency": QUEUE_CONCURRENCY,
    "update_heartbeat_interval": QUEUE_HEARTBEAT_INTERVAL,
    "stalled_worker_timeout": QUEUE_STALLED_AFTER,
    # BatchJob rows are the record; finished queue rows would only pile up (failed ones stay).
    "delete_jobs": "successful",
    "shutdown_graceful_timeout": envfloat("QUEUE_SHUTDOWN_TIMEOUT", 30.0),
}

# --- auth --------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTHENTICATION_BACKENDS = [
    # django-axes first: a locked-out user or address is refused before a password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login limits (django-axes): in the database, so they hold with Redis down. Locked
# per username and, separately, per client address; cleared by an administrator in the
# admin ("Access attempts") or after the cool-off.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = envint("LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The same address the audit trail records: the peer, or our proxy's right-most entry.
AXES_CLIENT_IP_CALLABLE = "vpnadmin.requestctx.client_ip"
AXES_VERBOSE = False
# Sessions: rotated at login (Django does), ended after SESSION_IDLE_TIMEOUT seconds
# without a request, and at most SESSION_COOKIE_AGE after login.
SESSION_IDLE_TIMEOUT = envint("SESSION_IDLE_TIMEOUT", 12 * 3600, minimum=60)
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 7 * 24 * 3600, minimum=300)
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
# Set only behind a proxy we run: then its X-Forwarded-For (right-most entry),
# X-Forwarded-Proto and X-Request-ID are believed; without it they are ignored.
BEHIND_PROXY = envbool("BEHIND_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
# Content-Security-Policy (django-csp 4): own origin only, no inline script or style,
# no eval (htmx runs with allowEval off; see templates/base.html).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
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
# A bulk action over more users than this runs in a queue worker, not in the request.
USERS_BULK_INLINE_MAX = envint("USERS_BULK_INLINE_MAX", 20_000, minimum=1)
# A streamed export ends (with a last line saying so) after this many seconds.
EXPORT_TIME_LIMIT = envfloat("EXPORT_TIME_LIMIT", 120.0)
USERS_CACHE_READS = envbool("USERS_CACHE_READS", True)  # off: lists and stats read PostgreSQL every time

# --- what VPN users receive: links, .conf files, subscription URLs (users/subscriptions) ---
SUBSCRIPTION_BASE_URL = envstr("SUBSCRIPTION_BASE_URL", "")  # e.g. https://sub.example.com; empty: the panel's own
SUBSCRIPTION_RATE_LIMIT = envint("SUBSCRIPTION_RATE_LIMIT", 60, minimum=1)  # requests per client address...
SUBSCRIPTION_RATE_PERIOD = envint("SUBSCRIPTION_RATE_PERIOD", 60, minimum=1)  # ...per this many seconds
SUBSCRIPTION_CLIENT_IP_HEADER = envstr("SUBSCRIPTION_CLIENT_IP_HEADER", "")  # e.g. HTTP_X_REAL_IP behind nginx
SUBSCRIPTION_CACHE_SECONDS = envint("SUBSCRIPTION_CACHE_SECONDS", 300, minimum=0)  # 0: every fetch reads PostgreSQL
SUBSCRIPTION_UPDATE_INTERVAL_HOURS = envint("SUBSCRIPTION_UPDATE_INTERVAL_HOURS", 12, minimum=1)
SUBSCRIPTION_PROFILE_TITLE = envstr("SUBSCRIPTION_PROFILE_TITLE", "vpnadmin")
SUBSCRIPTION_EXPORT_MAX_ROWS = envint("SUBSCRIPTION_EXPORT_MAX_ROWS", 100_000, minimum=1)  # URLs in one CSV
WIREGUARD_CLIENT_DNS = envlist("WIREGUARD_CLIENT_DNS", ["1.1.1.1", "2606:4700:4700::1111"])

# --- health ------------------------------------------------------------------------
HEALTH_CHECK_TIMEOUT = envfloat("HEALTH_CHECK_TIMEOUT", 1.5)
# An engine's ping is kept this long: a flood of /healthz costs each engine one ping per period.
HEALTH_ENGINE_CACHE_SECONDS = envfloat("HEALTH_ENGINE_CACHE_SECONDS", 5.0)

# --- memory profiler and metrics (perf) --------------------------------------------
# Read by perf.memory.profiler.ProfilerConfig, which checks every value (see README).
PROFILER = {
    "sampler": envbool("MEMORY_SAMPLER", True),  # the light sampler at the end of gunicorn workers' requests
    "interval_s": envfloat("MEMORY_SAMPLE_INTERVAL", 30.0),
    "tracemalloc_window_minutes": envint("MEMORY_TRACEMALLOC_MINUTES", 15, minimum=1),
    "leak_threshold_mb": envfloat("MEMORY_LEAK_THRESHOLD_MB", 20.0),  # MB per hour of sustained growth
    "window": envint("MEMORY_WINDOW", 30, minimum=3),  # snapshots in the trend
    "max_snapshots": envint("MEMORY_MAX_SNAPSHOTS", 240, minimum=3),  # kept per process
    "max_processes": envint("MEMORY_MAX_PROCESSES", 64, minimum=1),
}
# Set: /metrics wants `Authorization: Bearer <token>`; unset: a logged-in staff member.
METRICS_TOKEN = envsecret("METRICS_TOKEN")
# A file holding the token is read again when it changes: rotation needs no restart.
METRICS_TOKEN_FILE = envstr("METRICS_TOKEN_FILE", "")
# /healthz details (checks, versions, errors) for staff or `Authorization: Bearer <token>`.
HEALTH_TOKEN = envsecret("HEALTH_TOKEN")

# --- logging -----------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Every line names its request (the X-Request-ID header and the audit entries carry the same id).
    "filters": {
        "request_id": {"()": "vpnadmin.requestctx.RequestIdLogFilter"},
        # A subscription token in a log line is a working URL: /sub/<token> is logged redacted.
        "redact_tokens": {"()": "users.subscriptions.redact.RedactSubscriptionTokens"},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id", "redact_tokens"]}
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Connection pools log every retry at DEBUG; keep them quiet.
        "urllib3": {"level": "WARNING"},
        "docker": {"level": "WARNING"},
        # django-axes logs every attempt at INFO; failures and lockouts are in the audit trail.
        "axes": {"level": "WARNING"},
        # procrastinate lists every periodic task and blueprint at INFO while the app
        # loads, i.e. six lines before every manage.py command (and a one-line error).
        "procrastinate.periodic": {"level": "WARNING"},
        "procrastinate.blueprints": {"level": "WARNING"},
    },
}

# Serve static files straight from the source folders (tests, development).
WHITENOISE_USE_FINDERS = envbool("WHITENOISE_USE_FINDERS", DEBUG)
if WHITENOISE_USE_FINDERS:
    # WhiteNoise also scans STATIC_ROOT and warns when it is missing before collectstatic.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
