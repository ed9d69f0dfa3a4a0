"""The door of the proxy container: the sandboxes' Unix socket in, squid on loopback out, bytes counted.

Runs inside the proxy container (`python3 -m agentbot.sandbox.egress.gate`), stdlib only. Squid decides
every request (see squid.py); the gate only counts: a connection belongs to the run whose signed grant
its first request carries, and when a run's connections have moved more than the grant's `max_bytes`
(both directions, HTTPS tunnels included, which squid cannot cap), the gate closes all of them, refuses
the run's new ones, and writes one line in the access log's format so the run's audit says so. A first
request without a valid grant gets 403 here: every byte through the gate is counted against some run.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from agentbot.sandbox.egress.grant import Grant, verify

SECRET_ENV = "AGENTBOT_EGRESS_SECRET"
HEAD_LIMIT = 65_536  # a request head larger than this is refused (squid's own default is 64 KB)
CHUNK = 65_536
HEAD_SECONDS = 30.0
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Ledger:
    """Bytes per run, and the open connections of each run (to close them all at the cap)."""

    moved: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    open: dict[str, set[socket.socket]] = field(default_factory=lambda: defaultdict(set))
    capped: set[str] = field(default_factory=set)
    expires: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, grant: Grant, count: int) -> bool:
        """Count `count` bytes for the run; False once it is over its cap (its connections are closed)."""
        with self.lock:
            self.moved[grant.label] += count
            if self.moved[grant.label] <= grant.max_bytes:
                return True
            first = grant.label not in self.capped
            self.capped.add(grant.label)
            doomed = list(self.open[grant.label])
        for sock in doomed:
            _close(sock)
        if first:
            log_cap(grant.label, self.moved[grant.label])
        return False

    def join(self, grant: Grant, sock: socket.socket) -> bool:
        """Add a connection to its run; False when the run is already over its cap."""
        with self.lock:
            self._forget_expired(time.time())
            if grant.label in self.capped:
                return False
            self.open[grant.label].add(sock)
            self.expires[grant.label] = grant.expires
            return True

    def _forget_expired(self, now: float) -> None:
        """Drop runs whose grant expired and that have no connection left (bounded memory)."""
        for label in [label for label, at in self.expires.items() if at < now and not self.open[label]]:
            for table in (self.moved, self.open, self.expires):
                table.pop(label, None)
            self.capped.discard(label)

    def leave(self, grant: Grant, sock: socket.socket) -> None:
        with self.lock:
            self.open[grant.label].discard(sock)


def log_cap(label: str, moved: int) -> None:
    """One line in squid's access-log format (squid.LOG_FORMAT), verdict `bytes`, for the run's audit."""
    sys.stdout.write(f"{time.time():.3f} {label}%7Cbytes GATE - 0 403 GATE_CAP {moved} 0\n")
    sys.stdout.flush()


def read_head(client: socket.socket) -> bytes | None:
    """The first request's head (and whatever came with it), or None when it is too long or cut."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(CHUNK)
        if not chunk or len(data) + len(chunk) > HEAD_LIMIT:
            return None
        data += chunk
    return data


def grant_of(head: bytes, secret: bytes) -> Grant | None:
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"proxy-authorization":
            return verify(secret, value.strip().decode("latin-1"))
    return None


def serve_one(client: socket.socket, secret: bytes, upstream: tuple[str, int], ledger: Ledger) -> None:
    """Relay one connection to squid, counting its bytes against its run."""
    with client:
        client.settimeout(HEAD_SECONDS)  # a connection that never sends its request does not hold a thread
        try:
            head = read_head(client)
        except OSError:
            return
        client.settimeout(None)
        grant = grant_of(head, secret) if head is not None else None
        if head is None or grant is None or not ledger.join(grant, client):
            client.sendall(FORBIDDEN)
            return
        try:
            with socket.create_connection(upstream) as server:
                server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if ledger.add(grant, len(head)):
                    server.sendall(head)
                    pump(client, server, grant, ledger)
        except OSError:
            pass
        finally:
            ledger.leave(grant, client)


def pump(client: socket.socket, server: socket.socket, grant: Grant, ledger: Ledger) -> None:
    """Copy both ways until either side closes or the run goes over its cap."""
    peer = {client.fileno(): server, server.fileno(): client}
    with selectors.DefaultSelector() as selector:
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        while True:
            for key, _ in selector.select():
                source = client if key.fd == client.fileno() else server
                data = source.recv(CHUNK)
                if not data or not ledger.add(grant, len(data)):
                    return
                peer[key.fd].sendall(data)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    secret = os.environ.get(SECRET_ENV, "").encode()
    ledger = Ledger()
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)  # the code's uid in every sandbox connects (through its relay or directly)
    listener.listen(1024)
    sys.stderr.write("agentbot-egress gate listening\n")  # the worker waits for this line
    sys.stderr.flush()
    while True:
        client, _ = listener.accept()
        args = (client, secret, ("127.0.0.1", port), ledger)
        threading.Thread(target=serve_one, args=args, daemon=True).start()


if __name__ == "__main__":
    main()
