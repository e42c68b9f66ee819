"""gthread with a deadline on what a client sends and a timeout on what it reads.

gunicorn's gthread worker waits a few seconds for the first byte off-thread, but once a
request has begun it reads the rest on a blocking socket with no timeout: eight clients
trickling a header byte a second hold eight threads for as long as they like, and the
panel stops answering. Here a request must arrive whole (headers and body) within
GUNICORN_REQUEST_READ_TIMEOUT seconds of its first read, and every send to a client
that does not read gives up after GUNICORN_CLIENT_WRITE_TIMEOUT seconds. Behind nginx
(which buffers both ways) neither ever fires; without it they keep threads free.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Any

# gunicorn ships no type hints.
from gunicorn.http.unreader import SocketUnreader  # type: ignore[import-untyped]
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

READ_TIMEOUT = float(os.environ.get("GUNICORN_REQUEST_READ_TIMEOUT", "20"))
WRITE_TIMEOUT = float(os.environ.get("GUNICORN_CLIENT_WRITE_TIMEOUT", "30"))


class _DeadlineReader:
    """The socket as the request parser sees it: every recv within one overall deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = time.monotonic() + READ_TIMEOUT

    def restart(self) -> None:
        self.deadline = time.monotonic() + READ_TIMEOUT

    def recv(self, size: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(errno.ETIMEDOUT, "request not received within the read deadline")
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv(size)
        finally:
            self.sock.settimeout(WRITE_TIMEOUT)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class DeadlineConn(TConn):
    def init(self) -> None:
        super().init()
        unreader = getattr(self.parser, "unreader", None)
        if isinstance(unreader, SocketUnreader):
            if isinstance(unreader.sock, _DeadlineReader):
                unreader.sock.restart()  # the next request on a kept-alive connection
            else:
                unreader.sock = _DeadlineReader(unreader.sock)
        self.sock.settimeout(WRITE_TIMEOUT)


class DeadlineThreadWorker(ThreadWorker):
    def accept(self, listener: socket.socket) -> None:
        # ThreadWorker.accept, making a DeadlineConn.
        try:
            client_sock, client_addr = listener.accept()
            self.nr_conns += 1
            client_sock.setblocking(True)
            conn = DeadlineConn(self.cfg, client_sock, client_addr, listener.getsockname())
            self.enqueue_req(conn)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
