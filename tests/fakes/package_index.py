"""A package index (PEP 503 simple API) and a data API on this machine, for code run in the sandbox.

The index serves wheels the test builds in memory (`build_wheel`), so `pip install` in the sandbox
works with no registry; the data server answers like a small price API and records what it was sent.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.fakes.http import LoopbackServer, QuietHandler


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    content: bytes

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-py3-none-any.whl"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def build_wheel(name: str, version: str, modules: dict[str, str]) -> Wheel:
    """A pure-Python wheel holding `modules` (file name -> source), with a valid RECORD."""
    dist_info = f"{name}-{version}.dist-info"
    files = dict(modules)
    files[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files[f"{dist_info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: agentbot-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{path},sha256={_digest(text.encode())},{len(text.encode())}" for path, text in files.items()]
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return Wheel(name, version, buffer.getvalue())


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def package_index(wheels: list[Wheel], *, host: str = "127.0.0.1") -> LoopbackServer:
    """A PEP 503 index at `/simple/` serving `wheels` (not started)."""
    by_name = {wheel.name.lower().replace("_", "-"): wheel for wheel in wheels}

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802  # the name http.server dispatches to
            path = self.path.split("?")[0]
            if path.rstrip("/") == "/simple":
                links = "".join(f'<a href="/simple/{name}/">{name}</a>' for name in by_name)
                return self._html(links)
            if path.startswith("/simple/"):
                wheel = by_name.get(path.strip("/").split("/")[-1].lower().replace("_", "-"))
                if wheel is None:
                    return self.send_bytes(404, b"not found", content_type="text/plain")
                link = f'<a href="/files/{wheel.filename}#sha256={wheel.sha256}">{wheel.filename}</a>'
                return self._html(link)
            for wheel in by_name.values():
                if path == f"/files/{wheel.filename}":
                    return self.send_bytes(200, wheel.content, content_type="application/octet-stream")
            return self.send_bytes(404, b"not found", content_type="text/plain")

        def _html(self, body: str) -> None:
            page = f"<!DOCTYPE html><html><body>{body}</body></html>".encode()
            self.send_bytes(200, page, content_type="text/html")

    return LoopbackServer(Handler, host=host)


@dataclass
class DataLog:
    """What the data server was sent: paths and each request's header names."""

    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


PRICES = "date,NVDA,TSLA\n2026-01-02,100.0,200.0\n2026-06-01,150.0,180.0\n2026-11-27,175.0,240.0\n"


def data_server(log: DataLog, *, host: str = "127.0.0.1", big: int = 0) -> LoopbackServer:
    """Serves `/prices.csv` (and `/big`, `big` bytes), recording every request in `log` (not started)."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802  # the name http.server dispatches to
            log.paths.append(self.path)
            log.headers.append(dict(self.headers.items()))
            if self.path.startswith("/prices.csv"):
                return self.send_bytes(200, PRICES.encode(), content_type="text/csv")
            if self.path == "/big":
                return self.send_bytes(200, b"x" * big, content_type="application/octet-stream")
            return self.send_bytes(404, b"not found", content_type="text/plain")

    handler: type[BaseHTTPRequestHandler] = Handler
    return LoopbackServer(handler, host=host)
