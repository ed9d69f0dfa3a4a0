"""A loopback HTTP server in a daemon thread, shared by the fakes of network services."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server with a real listen backlog: socketserver's default of 5 resets bursts."""

    request_queue_size = 1024


class LoopbackServer:
    """Serves `handler_class` on 127.0.0.1 (a free port unless given) until `close()`.

    `host` may name another address of this machine, such as a Docker network's gateway that the
    tests created, for a server that containers must reach.
    """

    def __init__(
        self, handler_class: type[BaseHTTPRequestHandler], *, port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.httpd = LoopbackHTTPServer((host, port), handler_class)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        # A short poll interval keeps shutdown() (which waits for one poll) fast in teardown.
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-http", daemon=True
        )
        self._started = False

    @property
    def url(self) -> str:
        """`http://HOST:PORT` with no trailing slash."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def close(self) -> None:
        if self._started:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
        self.httpd.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not log to stderr and has JSON helpers."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY the body waits for the peer's delayed
    # ACK (40 ms on Linux) once a kept-alive connection (a proxy's, say) has left quick-ack mode.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        """Silence the per-request stderr line."""

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(
        self, status: int, body: bytes, *, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(
            status, json.dumps(payload).encode(), content_type="application/json", headers=headers
        )
