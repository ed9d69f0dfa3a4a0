"""The `web` process: the Bolt app over HTTP (`POST /slack/events`, `GET /healthz`) or Socket Mode.

HTTP is served by a threading `http.server`: one thread per connection, so a slow client never holds
up the acknowledgements of the others (Bolt's own development server handles one request at a time).
With `REDIS_URL`, `WEB_CONCURRENCY` processes serve the port: the parent binds it, forks that many
children (each with its own Redis connections, Bolt app and threads, built after the fork) that race
to accept connections, restarts a child that dies, and on SIGTERM/SIGINT stops them all and waits.
Acknowledging costs CPU under one GIL per process, so this is what keeps acks fast under bursts. The
embedded mode (no `REDIS_URL`) stays one process: its in-memory Redis lives in that process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, ClassVar

import redis
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from agentbot import runtime
from agentbot.errors import ConfigError
from agentbot.settings import Settings
from agentbot.slack.app import Bridge, build_app
from agentbot.slack.platform import SlackPlatform

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
MAX_BODY = 1_000_000  # Slack's payloads are a few KB; refuse anything absurd before reading it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
FAILED_START = 5.0  # a child that fails this soon after its fork is broken, not unlucky: give up
IDLE_THREAD_TTL = 60.0  # how long a request thread waits for the next connection before it ends
STOP_GRACE = 20.0  # then SIGKILL (platforms such as Heroku allow 30 s after SIGTERM)


def serve(settings: Settings) -> None:
    """Run the web process until SIGTERM/SIGINT: Socket Mode with `SLACK_APP_TOKEN`, else HTTP on `$PORT`."""
    if not settings.slack_bot_token.get_secret_value():
        raise ConfigError("SLACK_BOT_TOKEN: required by `agentbot web`")
    if settings.slack_app_token.get_secret_value():
        app = build_app(settings, bridge=build_bridge(settings), socket_mode=True)
        logger.info("serving Slack over Socket Mode")
        handler = SocketModeHandler(app, settings.slack_app_token.get_secret_value())
        handler.start()  # type: ignore[no-untyped-call]  # slack_bolt: no hints
        return
    server = SlackHTTPServer(("0.0.0.0", settings.port), SlackRequestHandler)
    processes = web_processes(settings)
    logger.info(
        "serving Slack on http://0.0.0.0:%d%s (%d process%s)",
        server.server_address[1], EVENTS_PATH, processes, "es" if processes > 1 else "",
    )  # fmt: skip
    if processes == 1:
        serve_http(settings, server)
    else:
        Prefork(settings, server, processes).run()


def web_processes(settings: Settings) -> int:
    """How many HTTP processes to run: `WEB_CONCURRENCY`, but one in the embedded mode (or without fork)."""
    return settings.web_concurrency if settings.redis_url and hasattr(os, "fork") else 1


def serve_http(settings: Settings, server: SlackHTTPServer, *, parent: int | None = None) -> None:
    """Serve `server`'s socket from this process until SIGTERM/SIGINT (its runtime built here).

    A child of `Prefork` passes its `parent`'s pid, and stops if that parent dies without stopping it.
    """
    if parent is not None:
        _stop_when_orphaned(server, parent)
    bridge = build_bridge(settings)
    bind_app(server, build_app(settings, bridge=bridge), redis_client=bridge.redis)
    _stop_on_signals(server)
    try:
        server.serve_forever()
    finally:
        server.server_close()  # no new connections; the requests in flight are answered
        if not server.wait_idle(STOP_GRACE / 2):
            logger.warning("stopping with requests still in flight")
        bridge.background.shutdown(wait=True, cancel_futures=True)


def build_bridge(settings: Settings) -> Bridge:
    """This process's runtime, and the bridge the Slack listeners share (the teams file read here)."""
    rt, platform = build_runtime(settings)
    return Bridge(store=rt.store, queue=rt.queue, redis=rt.redis, platform=platform, catalog=rt.teams)


def build_runtime(settings: Settings) -> tuple[runtime.Runtime, SlackPlatform]:
    """The process runtime with a Slack platform; without `REDIS_URL`, steps run in a thread here."""
    client, embedded = runtime.connect_redis(settings)
    platform = SlackPlatform.from_settings(settings, client)
    rt = runtime.Runtime(settings=settings, redis=client, platform=platform, embedded=embedded)
    runtime.install(rt)
    if embedded:
        from agentbot.workers import start_thread_worker  # noqa: PLC0415  # only the embedded mode

        start_thread_worker(rt)
    return rt, platform


def make_server(
    app: App, *, redis_client: redis.Redis, port: int, host: str = "0.0.0.0"
) -> ThreadingHTTPServer:
    """An HTTP server for `app` (not started); port 0 picks a free port (`server.server_address[1]`)."""
    server = SlackHTTPServer((host, port), SlackRequestHandler)
    bind_app(server, app, redis_client=redis_client)
    return server


def bind_app(server: ThreadingHTTPServer, app: App, *, redis_client: redis.Redis) -> None:
    """Let `server` answer with `app` (and check `redis_client` for `/healthz`)."""
    attributes = {"app": app, "redis": redis_client}
    server.RequestHandlerClass = type("BoundSlackHandler", (SlackRequestHandler,), attributes)


class Prefork:
    """`processes` children serving one listening socket, bound here before they are forked."""

    def __init__(self, settings: Settings, server: SlackHTTPServer, processes: int) -> None:
        self.settings = settings
        self.server = server
        self.processes = processes
        self.children: dict[int, float] = {}  # pid -> when it was started
        self.stopping = False
        # Every child is woken by a new connection and one wins the accept; the others must not
        # block in accept() (they would not see a shutdown), so the shared socket is non-blocking.
        server.socket.setblocking(False)

    def run(self) -> None:
        """Fork the children, replace any that dies, and stop them all on SIGTERM/SIGINT."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._stop)
        try:
            for _ in range(self.processes):
                self._fork()
            self._supervise()
        finally:
            self._stop_children()
            self.server.server_close()
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)

    def _supervise(self) -> None:
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                return
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)  # negative: killed by that signal
            young = time.monotonic() - started < FAILED_START
            if young and code > 0:  # it failed on its own while starting: another would too
                self._stop(0, None)
                raise SystemExit(f"agentbot: a web process exited with {code} at start; see the log above")
            logger.error("web process %d exited with %d; starting another", pid, code)
            if young:
                time.sleep(1)  # no tight loop of forks if something keeps killing them
            self._fork()

    def _fork(self) -> None:
        # Signals wait until the child has its own handlers, and the parent knows the child's pid.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the child
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            code = 0
            try:
                serve_http(self.settings, self.server, parent=os.getppid())
            except BaseException:
                logger.exception("web process %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)  # never return into the parent's code
        self.children[pid] = time.monotonic()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if signum:
            logger.info("signal %d: stopping %d web processes", signum, len(self.children))
        self.stopping = True
        for pid in list(self.children):
            _kill(pid, signal.SIGTERM)

    def _stop_children(self) -> None:
        """Wait for the children to stop (they finish the requests in flight); SIGKILL stragglers."""
        self._stop(0, None)
        deadline = time.monotonic() + STOP_GRACE
        while self.children and time.monotonic() < deadline:
            for pid in list(self.children):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    self.children.pop(pid)
            time.sleep(0.05)
        for pid in self.children:
            logger.warning("web process %d did not stop in %.0f s: killing it", pid, STOP_GRACE)
            _kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.children.clear()


def _stop_when_orphaned(server: SlackHTTPServer, parent: int) -> None:
    """A parent killed outright (SIGKILL) cannot stop its children: they notice, and stop on their own."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        logger.warning("the parent web process %d is gone: stopping", parent)
        server.shutdown()

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class SlackHTTPServer(ThreadingHTTPServer):
    """A thread per connection in flight, and a listen backlog for Slack's bursts (the default is 5).

    Threads are reused: one that has finished its connection waits `IDLE_THREAD_TTL` seconds for the
    next before it ends, and a connection that finds no waiting thread gets a new one, so a slow client
    still never holds up the others, while a burst does not pay for starting a thread per request.
    """

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[tuple[socket.socket, Any]] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for `_work`; a put is always paired with a decrement
        self._busy = 0  # requests being answered (not connections: a kept-alive one may idle)
        self._done = threading.Condition(self._lock)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = self.socket.accept()
        connection.setblocking(True)  # whatever the listening socket is (non-blocking when shared)
        return connection, address

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._work.put((request, client_address))
                return
        threading.Thread(target=self._serve, args=(request, client_address), daemon=True).start()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count a request in flight, for `wait_idle`."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._done.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being answered (at most `timeout` s); True if none is."""
        with self._done:
            return self._done.wait_for(lambda: self._busy == 0, timeout)

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        while True:
            self.process_request_thread(request, client_address)
            with self._lock:
                self._idle += 1
            try:
                request, client_address = self._work.get(timeout=IDLE_THREAD_TTL)
            except queue.Empty:
                with self._lock:
                    if self._work.empty():  # nobody counted on this thread: it may end
                        self._idle -= 1
                        return
                    request, client_address = self._work.get_nowait()  # handed over as it timed out


class SlackRequestHandler(BaseHTTPRequestHandler):
    """`POST /slack/events` into Bolt; `GET /healthz` is 200 when Redis answers, else 503."""

    app: ClassVar[App]
    redis: ClassVar[redis.Redis]
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # http.server's naming
        if self.path.partition("?")[0] != HEALTH_PATH:
            self._send(404, b"not found")
            return
        try:
            self.redis.ping()
        except redis.RedisError as exc:
            logger.warning("health check: Redis is not reachable: %s", exc)
            self._send(503, b"redis unreachable")
            return
        self._send(200, b"ok")

    def do_POST(self) -> None:  # http.server's naming
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        if path != EVENTS_PATH:
            self._send(404, b"not found")
            return
        if length > MAX_BODY:
            self._send(413, b"payload too large")
            return
        server = self.server
        with server.answering() if isinstance(server, SlackHTTPServer) else contextlib.nullcontext():
            body = self.rfile.read(length).decode("utf-8", errors="replace")
            headers: dict[str, str | Sequence[str]] = {
                name.lower(): self.headers.get_all(name) or [] for name in self.headers
            }
            response = self.app.dispatch(BoltRequest(body=body, query=query, headers=headers))
            self._send_bolt(response)

    def log_message(self, format: str, *args: object) -> None:  # stdlib's signature
        logger.debug("%s " + format, self.address_string(), *args)

    def _send_bolt(self, response: BoltResponse) -> None:
        body = response.body.encode() if isinstance(response.body, str) else bytes(response.body or b"")
        headers = {name: values[0] for name, values in response.headers.items() if values}
        headers.pop("content-length", None)
        self._send(response.status, body, headers=headers)

    def _send(self, status: int, body: bytes, *, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = headers or {"content-type": "text/plain; charset=utf-8"}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _stop_on_signals(server: ThreadingHTTPServer) -> None:
    """SIGTERM (the platform stopping the dyno) and SIGINT end `serve_forever` cleanly."""

    def _stop(signum: int, frame: FrameType | None) -> None:
        logger.info("signal %d: stopping the web server", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
