"""Table tests of egress grants: entries, signatures, and the decision on each request."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from agentbot.conversation import hosts
from agentbot.sandbox.egress.grant import (
    Decider,
    Grant,
    Never,
    matches,
    sign,
    split_host_port,
    verify,
)

SECRET = b"test-secret"
NOW = 1_000_000.0

DNS = {
    "files.example.org": ["93.184.216.34"],
    "cdn.example.org": ["93.184.216.35"],
    "data.internal": ["10.1.2.3"],
    "rebound.example.org": ["169.254.169.254"],
    "loop.example.org": ["127.0.0.1"],
}


def fake_dns(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    if host in DNS:
        return [ipaddress.ip_address(a) for a in DNS[host]]
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        raise OSError("no such host") from None


def credentials(grant: Grant, secret: bytes = SECRET) -> str:
    return "Basic " + base64.b64encode(sign(secret, grant).encode()).decode()


def decider(never: Never | None = None) -> Decider:
    return Decider(secret=SECRET, never=never or Never(), resolve=fake_dns, clock=lambda: NOW)


def grant(hosts: tuple[str, ...] = (), private: tuple[str, ...] = (), **kw: object) -> Grant:
    return Grant("ws-r1", NOW + 60, hosts, private, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entry", "host", "port", "expected"),
    [
        ("files.example.org", "files.example.org", 443, True),
        ("files.example.org", "files.example.org", 80, True),
        ("files.example.org", "files.example.org", 8080, False),
        ("files.example.org:8080", "files.example.org", 8080, True),
        ("files.example.org:8080", "files.example.org", 443, False),
        ("*.example.org", "cdn.example.org", 443, True),
        ("*.example.org", "example.org", 443, False),
        ("*.example.org", "evil-example.org", 443, False),
        ("*.example.org", "cdn.example.org.evil.net", 443, False),
        ("FILES.example.org", "files.example.org", 443, True),
        ("10.1.2.3:9000", "10.1.2.3", 9000, True),
        ("[::1]:8080", "::1", 8080, True),
    ],
)
def test_an_entry_names_a_host_and_port(entry: str, host: str, port: int, expected: bool) -> None:
    assert matches(entry, host, port) is expected


def test_a_wildcard_is_never_an_exact_entry() -> None:
    assert not matches("*.example.org", "cdn.example.org", 443, exact=True)


@pytest.mark.parametrize(
    ("host", "port", "name"),
    [("a.org", 443, "a.org"), ("a.org", 80, "a.org"), ("a.org", 8080, "a.org:8080"), ("::1", 81, "[::1]:81")],
)
def test_hosts_are_named_with_their_port_unless_it_is_80_or_443(host: str, port: int, name: str) -> None:
    assert hosts.name(host, port) == name  # the name the audit reports and people allow


@pytest.mark.parametrize(
    ("text", "expected"), [("a:1", ("a", 1)), ("a", ("a", 0)), ("[::1]:5", ("::1", 5)), ("::1", ("::1", 0))]
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text, default=0) == expected


def test_a_signed_grant_verifies_and_keeps_its_lists() -> None:
    g = grant(("files.example.org",), ("data.internal:8080",), max_requests=7)
    assert verify(SECRET, credentials(g)) == g


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token.replace("ws-r1", "ws-r2"),
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: token.split(".")[0],
        lambda token: "garbage",
    ],
)
def test_a_changed_or_garbled_grant_does_not_verify(forge: object) -> None:
    token = forge(sign(SECRET, grant(("files.example.org",))))  # type: ignore[operator]
    assert verify(SECRET, "Basic " + base64.b64encode(token.encode()).decode()) is None


def test_a_grant_signed_with_another_secret_does_not_verify() -> None:
    assert verify(SECRET, credentials(grant(("a.org",)), secret=b"other")) is None


@pytest.mark.parametrize(
    ("hosts", "private", "host", "port", "verdict"),
    [
        (("files.example.org",), (), "files.example.org", 443, "allowed"),
        (("*.example.org",), (), "cdn.example.org", 443, "allowed"),
        ((), (), "files.example.org", 443, "denied"),
        (("files.example.org",), (), "files.example.org", 22, "denied"),
        # private addresses and IP literals need an exact entry that may open them
        (("data.internal:8080",), (), "data.internal", 8080, "private"),
        (("data.internal:8080",), ("data.internal:8080",), "data.internal", 8080, "allowed"),
        (("10.1.2.3:8080",), (), "10.1.2.3", 8080, "private"),
        (("10.1.2.3:8080",), ("10.1.2.3:8080",), "10.1.2.3", 8080, "allowed"),
        (("93.184.216.34",), (), "93.184.216.34", 443, "private"),
        # DNS answers never widen a grant: a public name that resolves to metadata or loopback
        (("rebound.example.org",), ("rebound.example.org",), "rebound.example.org", 80, "never"),
        (("loop.example.org",), ("loop.example.org",), "loop.example.org", 443, "never"),
        # never-addresses, whatever the entries say
        (("169.254.169.254",), ("169.254.169.254",), "169.254.169.254", 80, "never"),
        (("127.0.0.1:6379",), ("127.0.0.1:6379",), "127.0.0.1", 6379, "never"),
        (("[::1]:80",), ("[::1]:80",), "::1", 80, "never"),
    ],
)
def test_each_request_gets_a_verdict(
    hosts: tuple[str, ...], private: tuple[str, ...], host: str, port: int, verdict: str
) -> None:
    assert decider().decide(credentials(grant(hosts, private)), host, port) == (verdict, "ws-r1")


def test_a_never_endpoint_stays_shut_even_when_named_exactly() -> None:
    never = Never.parse("10.1.2.3:6379,172.17.0.1")
    d = decider(never)
    everything = grant(
        ("10.1.2.3:6379", "10.1.2.3:8080", "172.17.0.1:80"),
        ("10.1.2.3:6379", "10.1.2.3:8080", "172.17.0.1:80"),
    )
    assert d.decide(credentials(everything), "10.1.2.3", 6379)[0] == "never"
    assert d.decide(credentials(everything), "10.1.2.3", 8080)[0] == "allowed"
    assert d.decide(credentials(everything), "172.17.0.1", 80)[0] == "never"


def test_never_round_trips_through_its_text() -> None:
    never = Never.parse("10.1.2.3:6379,172.17.0.1,[fd00::1]:2375")
    assert Never.parse(never.render()) == never


def test_an_expired_or_unsigned_request_is_refused() -> None:
    old = Grant("ws-r0", NOW - 1, ("files.example.org",))
    assert decider().decide(credentials(old), "files.example.org", 443) == ("expired", "ws-r0")
    assert decider().decide("", "files.example.org", 443) == ("unsigned", "-")
    assert decider().decide("Bearer x", "files.example.org", 443) == ("unsigned", "-")


def test_requests_beyond_the_runs_cap_are_refused() -> None:
    d = decider()
    token = credentials(grant(("files.example.org",), max_requests=2))
    verdicts = [d.decide(token, "files.example.org", 443)[0] for _ in range(3)]
    assert verdicts == ["allowed", "allowed", "cap"]


def test_the_exact_question_needs_an_exact_private_entry() -> None:
    d = decider()
    assert (
        d.exact(credentials(grant(("*.internal",), ("data.internal:8080",))), "data.internal", 8080)[0]
        == "allowed"
    )
    assert (
        d.exact(credentials(grant(("*.internal",), ("*.internal",))), "data.internal", 8080)[0] == "private"
    )
