"""A Docker engine that can be "stopped" and "started" without touching the real one.

The worker is pointed at this proxy with `DOCKER_HOST=unix://<path>`; the proxy forwards every byte to
the real engine's socket. `stop()` closes the listening socket, removes its path and cuts every open
connection, so the worker sees exactly what it sees when `dockerd` is down (no socket, connection
refused, connections dropped); `start()` brings it back. The real engine, its containers and the other
tests and sessions using it are never disturbed (stopping the real `dockerd` would kill their
containers too).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

DEFAULT_ENGINE = "/var/run/docker.sock"


def engine_socket() -> str | None:
    """The real engine's unix socket (from `DOCKER_HOST` or the default), None if not a unix socket."""
    host = os.environ.get("DOCKER_HOST", f"unix://{DEFAULT_ENGINE}")
    if not host.startswith("unix://"):
        return None
    path = host.removeprefix("unix://")
    return path if Path(path).exists() else None


class DockerSocketProxy:
    """Forwards a unix socket at `path` to the engine's socket at `upstream` while started."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.path = path
        self.upstream = upstream
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="docker-proxy", daemon=True).start()

    def stop(self) -> None:
        """The engine goes away: no socket to connect to, and open connections are cut."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                engine.connect(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections.update((client, engine))
            ended = threading.Semaphore(0)
            for source, sink in ((client, engine), (engine, client)):
                threading.Thread(target=self._pump, args=(source, sink, ended), daemon=True).start()
            threading.Thread(target=self._close_when_done, args=(client, engine, ended), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, ended: threading.Semaphore) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            ended.release()

    def _close_when_done(
        self, client: socket.socket, engine: socket.socket, ended: threading.Semaphore
    ) -> None:
        for _ in range(2):
            ended.acquire()
        with self._lock:
            self._connections.difference_update((client, engine))
        client.close()
        engine.close()
