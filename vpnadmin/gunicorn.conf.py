"""gunicorn configuration: `gunicorn -c vpnadmin/gunicorn.conf.py vpnadmin.wsgi`.

gthread workers, so a slow Docker engine ties up a thread, not a whole process.
Bind and sizes come from the environment.
"""

from __future__ import annotations

import os

bind = f"{os.environ.get('BIND', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
# Recycle workers now and then so slow native growth never accumulates for weeks;
# the jitter keeps them from restarting all at once.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "5000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "500"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None  # empty: no access log
errorlog = "-"
wsgi_app = "vpnadmin.wsgi:application"
