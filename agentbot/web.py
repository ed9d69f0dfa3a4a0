"""The web process's WSGI app (`POST /slack/events`, `GET /healthz`, `GET /metrics`) and gunicorn serving it.

gunicorn (gthread workers) owns the sockets, the worker processes and the signals: SIGTERM stops taking
connections, lets the requests in flight finish (`STOP_GRACE`), and ends. Each worker process builds
its own runtime (Redis connections, Bolt app, threads) after the fork, in `GunicornServer.load`.

Slack's requests go through Bolt's WSGI adapter. A request Bolt cannot even read (a signed body that is
not JSON, a form whose `payload` is not JSON, a body that is not UTF-8) is answered 400 with one log
line; gunicorn answers an unreadable HTTP request itself (`Content-Length: abc`) with 400 and one line.
The time to answer each Slack request is `agentbot_ack_seconds`; `GET /metrics` shows every web
process's metrics (`agentbot.metrics`: gunicorn's processes share a multiprocess directory).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from agentbot import logs
from agentbot.errors import ConfigError
from agentbot.logs import LogFormat
from agentbot.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
MAX_BODY = 1_000_000  # Slack's payloads are a few KB; refuse anything absurd before reading it
STOP_GRACE = 20  # seconds for requests in flight after SIGTERM (platforms such as Heroku allow 30)

Handler = Callable[["WSGIEnvironment"], WsgiHttpResponse]


class BadRequestError(ValueError):
    """A request that cannot be read; its message says why, in one line."""


def text(status: int, body: str) -> WsgiHttpResponse:
    """A plain-text answer."""
    return WsgiHttpResponse(status=status, headers={"content-type": ["text/plain; charset=utf-8"]}, body=body)


class SlackEvents(SlackRequestHandler):
    """Bolt's WSGI adapter, reading the request itself so that an unreadable one is a 400, not a 500."""

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        return self.app.dispatch(read_request(request))


def read_request(request: WsgiHttpRequest) -> BoltRequest:
    """The Bolt request of a WSGI request, or `BadRequestError` (Bolt parses the body before verifying it)."""
    length = request.environ.get("CONTENT_LENGTH") or "0"
    if not length.isdigit():
        raise BadRequestError(f"Content-Length is not a number: {length[:40]!r}")
    if int(length) > MAX_BODY:
        raise BadRequestError(f"body of {length} bytes is larger than {MAX_BODY}")
    try:
        body = request.get_body()
        return BoltRequest(body=body, query=request.query_string, headers=request.get_headers())
    except UnicodeDecodeError as exc:
        raise BadRequestError(f"body is not UTF-8 ({exc.reason})") from exc
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSONDecodeError is a ValueError
        raise BadRequestError(f"body is not a Slack payload ({type(exc).__name__}: {exc})") from exc


class WebApp:
    """The WSGI app: Slack's events (absent in Socket Mode), the health check, and any added route."""

    def __init__(
        self, bolt: App | None, *, healthy: Callable[[], bool], metrics: Metrics | None = None
    ) -> None:
        self._healthy = healthy
        self._metrics = metrics or Metrics()
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", HEALTH_PATH): self._health,
            ("GET", METRICS_PATH): self._exposition,
        }
        if bolt is not None:
            self._slack = SlackEvents(bolt, path=EVENTS_PATH)
            self.route("POST", EVENTS_PATH, self._events)

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Answer `method path` with `handler` (e.g. `GET /metrics`)."""
        self._routes[(method, path)] = handler

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = self._answer(environ)
        start_response(response.status, response.get_headers())
        return response.get_body()

    def _answer(self, environ: WSGIEnvironment) -> WsgiHttpResponse:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        handler = self._routes.get((method, path))
        if handler is None:
            known = any(route_path == path for _, route_path in self._routes)
            return text(405, "method not allowed") if known else text(404, "not found")
        try:
            return handler(environ)
        except BadRequestError as exc:
            logger.warning("bad request %s %s from %s: %s", method, path, environ.get("REMOTE_ADDR"), exc)
            return text(400, "bad request")

    def _events(self, environ: WSGIEnvironment) -> WsgiHttpResponse:
        started = time.perf_counter()
        try:
            answer = self._slack.dispatch(WsgiHttpRequest(environ))
            return WsgiHttpResponse(status=answer.status, headers=answer.headers, body=answer.body)
        finally:
            self._metrics.ack_seconds.observe(time.perf_counter() - started)

    def _exposition(self, environ: WSGIEnvironment) -> WsgiHttpResponse:
        body = self._metrics.render().decode()
        return WsgiHttpResponse(status=200, headers={"content-type": [CONTENT_TYPE]}, body=body)

    def _health(self, environ: WSGIEnvironment) -> WsgiHttpResponse:
        return text(200, "ok") if self._healthy() else text(503, "redis unreachable")


@dataclass(frozen=True)
class ServerOptions:
    """How gunicorn serves: the port, worker processes and threads, and its log level."""

    port: int
    workers: int
    threads: int
    log_level: str = "info"
    host: str = "0.0.0.0"
    log_format: LogFormat = "text"

    def gunicorn(self) -> dict[str, Any]:
        return {
            # JSON lines: gunicorn's own logging through ours (with `text`, its usual lines)
            "logconfig_dict": logs.dict_config(self.log_level.upper(), "json")
            if self.log_format == "json"
            else {},
            "bind": [f"{self.host}:{self.port}"],
            "workers": self.workers,
            "worker_class": "gthread",
            "threads": self.threads,
            "graceful_timeout": STOP_GRACE,
            "loglevel": self.log_level.lower(),
            "accesslog": None,
            "proc_name": "agentbot-web",
            # Since gunicorn 25.1 a control socket is made in $HOME by default: two web processes on one
            # machine would fight over it, and nothing here uses it.
            "control_socket_disable": True,
        }


class GunicornServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's arbiter serving the WSGI app that `load` builds in each worker process."""

    def __init__(
        self, options: ServerOptions, load: Callable[[], WSGIApplication], *, stop: Callable[[], None]
    ) -> None:
        self._options = options
        self._load = load
        self._stop = stop
        super().__init__(prog="agentbot web")

    def load_config(self) -> None:
        known: Mapping[str, object] = self.cfg.settings
        options = {**self._options.gunicorn(), "worker_exit": self._worker_exit}
        for name, value in options.items():
            if name in known:  # an older gunicorn lacks some (e.g. the control socket)
                self.cfg.set(name, value)

    def load(self) -> WSGIApplication:
        return self._load()

    def _worker_exit(self, server: object, worker: object) -> None:
        self._stop()


def check_port(options: ServerOptions) -> None:
    """`ConfigError` in one line when the port cannot be bound (gunicorn would retry, then say so in five)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds it
        try:
            probe.bind((options.host, options.port))
        except OSError as exc:
            reason = f"cannot listen there ({exc.strerror})"
            raise ConfigError(f"PORT {options.port}: {reason}: choose another port") from exc


def serve(options: ServerOptions, load: Callable[[], WSGIApplication], *, stop: Callable[[], None]) -> None:
    """Serve until SIGTERM/SIGINT; `load` runs in each worker process, `stop` when that process ends."""
    GunicornServer(options, load, stop=stop).run()
