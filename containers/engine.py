"""Talking to Docker engines.

docker-py's `from_env()` calls the daemon at construction and its default timeout (60 s)
is above gunicorn's worker timeout, so clients here are built lazily, with an explicit
API version and a short timeout, and every failure becomes a short message.
"""

from __future__ import annotations

import threading

import docker
import requests
from docker.errors import DockerException

# Debian 12's engine (20.10) speaks 1.41; pinning it avoids a version round trip.
DOCKER_API_VERSION = "1.41"


def describe_engine_error(exc: BaseException) -> str:
    """One short line for an engine failure, whatever layer raised it."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        return "engine did not answer in time"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "engine unreachable (connection refused or socket missing)"
    if isinstance(exc, docker.errors.APIError):
        return f"engine error: {exc.explanation or exc.status_code}"
    if isinstance(exc, DockerException):
        return f"engine error: {exc}"
    return f"{type(exc).__name__}: {exc}"


_ping_clients: dict[tuple[str, float], docker.APIClient] = {}
_ping_clients_lock = threading.Lock()


def _ping_client(base_url: str, timeout: float) -> docker.APIClient:
    # Building a client costs more than the ping itself (~9 ms against ~1 ms): keep one
    # per engine. Creating it does not touch the daemon (the API version is pinned).
    key = (base_url, timeout)
    with _ping_clients_lock:
        client = _ping_clients.get(key)
        if client is None:
            client = docker.APIClient(base_url=base_url, version=DOCKER_API_VERSION, timeout=timeout)
            _ping_clients[key] = client
        return client


def ping_engine(base_url: str, *, timeout: float) -> str:
    """Ping one engine; return its server version (from the ping's headers). Raises on failure."""
    client = _ping_client(base_url, timeout)
    response = client._get(client._url("/_ping"))
    client._raise_for_status(response)
    # "Docker/20.10.24+dfsg1 (linux)"
    server = response.headers.get("Server", "")
    return server.split("/", 1)[-1].split(" ", 1)[0] if "/" in server else response.headers.get("Api-Version", "?")
