"""A file host on loopback that records the `Authorization` header of every request it gets.

It stands in for the host a Slack file URL may redirect to (a CDN): a downloader must reach it
without the bot token. `/files/<name>` serves a file; `/to/<url>` redirects (302) to `<url>`.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from tests.fakes.http import LoopbackServer, QuietHandler


class FakeFileHost(LoopbackServer):
    """Serves `add()`ed files to anyone; `seen` lists (path, Authorization header or None)."""

    def __init__(self) -> None:
        handler = type("_Handler", (_FileHandler,), {"host": self})
        super().__init__(handler)
        self.files: dict[str, bytes] = {}
        self.seen: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def add(self, name: str, content: bytes) -> str:
        """Serve `content` at the returned URL."""
        self.files[name] = content
        return f"{self.url}/files/{name}"

    def redirect(self, to: str) -> str:
        """A URL on this host that redirects to `to`."""
        return f"{self.url}/to/{to}"


class _FileHandler(QuietHandler):
    host: ClassVar[FakeFileHost]

    def do_GET(self) -> None:  # noqa: N802  # http.server's naming
        with self.host.lock:
            self.host.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/to/"):
            self.send_bytes(302, b"", content_type="text/plain", headers={"Location": self.path[4:]})
            return
        found = self.host.files.get(self.path.removeprefix("/files/"))
        if found is None:
            self.send_bytes(404, b"not found", content_type="text/plain")
        else:
            self.send_bytes(200, found, content_type="text/csv")
