"""vpnadmin's settings without the login limiter: the baseline of the login benchmark.

Only django-axes' middleware and authentication backend are removed (as the issue asks);
the app stays installed, so the rest of the stack is the same.
"""

from __future__ import annotations

from vpnadmin.settings import *  # noqa: F403
from vpnadmin.settings import AUTHENTICATION_BACKENDS, MIDDLEWARE

MIDDLEWARE = [name for name in MIDDLEWARE if not name.startswith("axes.")]
AUTHENTICATION_BACKENDS = [name for name in AUTHENTICATION_BACKENDS if not name.startswith("axes.")]
