"""Signed per-run egress grants and the decision on one request: stdlib only, shared with the proxy.

The worker signs what one run may reach (`sign`); the code sees the result only as the password of its
`HTTP_PROXY` URL. The proxy's access helper (`squid_acl.py`, which runs inside the proxy container with
this file beside it) verifies the signature and decides each request (`decide`). A run cannot widen its
grant: changing one byte breaks the HMAC, and the secret lives only in the proxy container's environment.

Decisions, in order: `never` (addresses nobody may open: loopback, link-local and cloud metadata, the
proxy, Redis, the Docker API), `expired`, `cap` (too many requests in this run), `denied` (no entry names
the host), `private` (the host is, or resolves to, a private or Docker-host address and no entry that may
open such addresses names it exactly), else `allowed`. DNS answers never widen a grant: a name that
resolves to a private address needs an exact private entry, and one that resolves to a never-address is
refused whatever the entries say.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[IPAddress]]

WEB_PORTS = (80, 443)
# Never open, whoever asks: this host, link-local (cloud metadata at 169.254.169.254 included),
# "this network", multicast and the reserved ranges.
NEVER_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fe80::/10",
        "ff00::/8",
    )
)
# Open only through an exact entry from someone allowed to open them.
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "198.18.0.0/15",
        "fc00::/7",
    )
)


@dataclass(frozen=True)
class Grant:
    """What one run may reach; `label` names the run in the proxy's log (not a secret)."""

    label: str
    expires: float
    hosts: tuple[str, ...] = ()
    private_hosts: tuple[str, ...] = ()
    max_requests: int = 256
    max_bytes: int = 200 * 1024 * 1024


@dataclass(frozen=True)
class Never:
    """Addresses and address:port pairs that no grant opens (besides `NEVER_NETWORKS`)."""

    addresses: tuple[IPAddress, ...] = ()
    endpoints: tuple[tuple[IPAddress, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Never:
        """From `1.2.3.4,5.6.7.8:6379,[::1]:2375` (how the proxy container receives it)."""
        addresses: list[IPAddress] = []
        endpoints: list[tuple[IPAddress, int]] = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            host, port = split_host_port(item, default=0)
            address = ipaddress.ip_address(host)
            if port:
                endpoints.append((address, port))
            else:
                addresses.append(address)
        return cls(tuple(addresses), tuple(endpoints))

    def render(self) -> str:
        parts = [str(address) for address in self.addresses]
        parts += [join_host_port(str(address), port) for address, port in self.endpoints]
        return ",".join(parts)

    def forbids(self, address: IPAddress, port: int) -> bool:
        if any(address in network for network in NEVER_NETWORKS) or address in self.addresses:
            return True
        return (address, port) in self.endpoints


@dataclass
class Decider:
    """Decides requests for the proxy; counts each run's requests (one process: see squid_acl.py)."""

    secret: bytes
    never: Never = field(default_factory=Never)
    resolve: Resolver = field(default=lambda host: resolve(host))  # noqa: PLW0108  # defined below
    clock: Callable[[], float] = time.time
    requests: dict[str, int] = field(default_factory=dict)

    def decide(self, credentials: str, host: str, port: int) -> tuple[str, str]:
        """(verdict, run label) for a request to `host:port` carrying `credentials` (Basic …)."""
        grant = verify(self.secret, credentials)
        if grant is None:
            return "unsigned", "-"
        label = grant.label
        verdict = self._verdict(grant, host.lower().strip("[]").rstrip("."), port)
        if verdict == "allowed":
            self.requests[label] = self.requests.get(label, 0) + 1
            if self.requests[label] > grant.max_requests:
                return "cap", label
        return verdict, label

    def exact(self, credentials: str, host: str, port: int) -> tuple[str, str]:
        """Whether an entry that may open private addresses names `host:port` exactly (squid asks
        this when the resolved address is private: its own check, after its own DNS lookup)."""
        grant = verify(self.secret, credentials)
        if grant is None:
            return "unsigned", "-"
        host = host.lower().strip("[]").rstrip(".")
        named = any(matches(entry, host, port, exact=True) for entry in grant.private_hosts)
        return ("allowed" if named else "private"), grant.label

    def _verdict(self, grant: Grant, host: str, port: int) -> str:
        if self.clock() > grant.expires:
            return "expired"
        if is_ip_literal(host) and self.never.forbids(ipaddress.ip_address(host), port):
            return "never"
        if not any(matches(entry, host, port) for entry in grant.hosts):
            return "denied"  # decided before any DNS lookup: a denied name costs no resolver time
        try:
            addresses = self.resolve(host)
        except OSError:
            addresses = []
        if any(self.never.forbids(address, port) for address in addresses):
            return "never"
        if is_ip_literal(host) or any(is_private(address) for address in addresses):
            exact = any(matches(entry, host, port, exact=True) for entry in grant.private_hosts)
            return "allowed" if exact else "private"
        return "allowed"


def sign(secret: bytes, grant: Grant) -> str:
    """`label:payload.mac`: the userinfo of the run's proxy URL (URL-safe, no `@` or `:` inside parts)."""
    payload = _b64(
        json.dumps(
            [
                grant.expires,
                list(grant.hosts),
                list(grant.private_hosts),
                grant.max_requests,
                grant.max_bytes,
            ],
            separators=(",", ":"),
        ).encode()
    )
    return f"{grant.label}:{payload}.{_mac(secret, grant.label, payload)}"


def verify(secret: bytes, credentials: str) -> Grant | None:
    """The grant in a `Proxy-Authorization` value (`Basic base64(label:payload.mac)`), or None if forged."""
    scheme, _, token = credentials.replace("%20", " ").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        label, _, signed = base64.b64decode(token, validate=True).decode().partition(":")
        payload, _, mac = signed.rpartition(".")
        if not payload or not hmac.compare_digest(mac, _mac(secret, label, payload)):
            return None
        expires, hosts, private_hosts, max_requests, max_bytes = json.loads(_unb64(payload))
        return Grant(
            label, float(expires), tuple(hosts), tuple(private_hosts), int(max_requests), int(max_bytes)
        )
    except (ValueError, TypeError, UnicodeDecodeError):
        return None


def matches(entry: str, host: str, port: int, *, exact: bool = False) -> bool:
    """Whether `entry` (`host`, `*.domain`, `host:port`) names `host:port`; a bare host means 80 and 443."""
    entry_host, entry_port = split_host_port(entry.lower(), default=0)
    if entry_port and entry_port != port:
        return False
    if not entry_port and port not in WEB_PORTS:
        return False
    if entry_host.startswith("*."):
        return not exact and host.endswith(entry_host[1:]) and not is_ip_literal(host)
    return host == entry_host.strip("[]")


def split_host_port(text: str, *, default: int) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `host` or `v6` into (host, port); `default` when no port is given."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, default


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_private(address: IPAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    return any(address in network for network in PRIVATE_NETWORKS) or any(
        address in network for network in NEVER_NETWORKS
    )


def resolve(host: str) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is itself)."""
    if is_ip_literal(host):
        return [ipaddress.ip_address(host.strip("[]"))]
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return _unique(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos)


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    return list(dict.fromkeys(addresses))


def _mac(secret: bytes, label: str, payload: str) -> str:
    return _b64(hmac.new(secret, f"{label}\0{payload}".encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
