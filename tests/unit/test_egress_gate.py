"""The gate's ledger and request heads: bytes per run, the cap closes every connection of the run."""

from __future__ import annotations

import base64
import socket

from agentbot.sandbox.egress.gate import Ledger, grant_of, read_head
from agentbot.sandbox.egress.grant import Grant, sign

SECRET = b"gate-secret"


def grant(max_bytes: int = 100, expires: float = 4e9) -> Grant:
    return Grant("ws-r1", expires, ("a.example.org",), max_bytes=max_bytes)


def head(g: Grant | None) -> bytes:
    auth = b""
    if g is not None:
        auth = b"Proxy-Authorization: Basic " + base64.b64encode(sign(SECRET, g).encode()) + b"\r\n"
    return b"CONNECT a.example.org:443 HTTP/1.1\r\nHost: a.example.org:443\r\n" + auth + b"\r\n"


def test_the_first_request_names_its_run_only_with_a_valid_grant() -> None:
    assert grant_of(head(grant()), SECRET) == grant()
    assert grant_of(head(None), SECRET) is None
    assert grant_of(head(grant()), b"another secret") is None


def test_a_run_over_its_cap_loses_every_connection_and_may_open_no_more() -> None:
    ledger = Ledger()
    left, right = socket.socketpair()
    other_left, other_right = socket.socketpair()
    with left, right, other_left, other_right:
        g = grant(max_bytes=100)
        assert ledger.join(g, left) and ledger.join(g, other_left)
        assert ledger.add(g, 60)
        assert not ledger.add(g, 60)  # 120 > 100: both connections are shut down
        assert left.recv(1) == b"" and other_left.recv(1) == b""
        with socket.socket() as late:
            assert not ledger.join(g, late)


def test_expired_runs_without_connections_are_forgotten() -> None:
    ledger = Ledger()
    old = grant(expires=1.0)
    with socket.socket() as sock, socket.socket() as current:
        ledger.join(old, sock)
        ledger.leave(old, sock)
        ledger.join(Grant("ws-r2", 4e9), current)
    assert ledger.expires == {"ws-r2": 4e9}
    assert "ws-r1" not in ledger.open


def test_a_head_longer_than_the_limit_is_refused() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 70_000)
        left.shutdown(socket.SHUT_WR)
        assert read_head(right) is None
