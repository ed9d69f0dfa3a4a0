"""A WSGI app served on loopback in a thread (stdlib `wsgiref`, a thread per request), for in-process tests.

The product serves `agentbot.web.WebApp` with gunicorn in worker processes; tests that want the app in
their own process (to look at its runtime) serve the same WSGI app with this instead.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import TYPE_CHECKING, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 1024


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # stdlib's signature
        """No access log on stderr."""


class LoopbackWSGI:
    """Serves `app` on 127.0.0.1 at a free port until `close()`."""

    def __init__(self, app: WSGIApplication) -> None:
        self.httpd = make_server(
            "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="wsgi", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self._thread.join(timeout=5)
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
