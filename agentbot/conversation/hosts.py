"""Allowed-host entries as people write them (`host`, `*.domain`, `host:port`): parse, normalise, name.

An entry names what a sandbox may reach through the egress proxy:

- `host` — that host on ports 80 and 443 (`data.example.org`, `10.0.0.5`, `[fd00::5]`);
- `*.domain` — every host under `domain`, ports 80 and 443 (whether `domain` itself is included is
  the proxy's rule; name it too to be sure);
- `host:port` — that host on that one port only (`data.internal:8080`).

Entries are normalised (lower case, no trailing dot) so that lists can be compared and merged. A bad
entry raises `ValueError` with one line that names it and says what is wrong. Matching connections
against entries is the proxy's job; this module only reads and writes the entries.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

WEB_PORTS = (80, 443)  # what a bare `host` entry opens

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_HOST_PORT = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?$")
_MAX_NAME = 253


def parse_entry(text: str) -> str:
    """`text` as a normalised entry (`Data.Example.org.` -> `data.example.org`); ValueError if it is none."""
    entry = text.strip().lower()
    if not entry:
        raise ValueError("empty host entry")
    if "://" in entry or "/" in entry or "@" in entry or any(c.isspace() for c in entry):
        raise ValueError(f"{text.strip()!r} is not a host entry: write `host`, `*.domain` or `host:port`")
    if entry.startswith("*."):
        return "*." + _domain(entry[2:], text)
    match = _HOST_PORT.match(entry)
    if match is None:
        raise ValueError(f"{text.strip()!r}: write an IPv6 address in brackets, e.g. `[fd00::5]:8080`")
    host = _host(match.group("host"), text)
    port = match.group("port")
    return host if port is None else f"{host}:{_port(port, text)}"


def parse_entries(items: Iterable[str]) -> tuple[str, ...]:
    """Each item as an entry, in order, without repeats; ValueError naming the first bad one."""
    return tuple(dict.fromkeys(parse_entry(item) for item in items))


def parse_list(text: str) -> tuple[str, ...]:
    """A comma list of entries (`AGENTBOT_SANDBOX_ALLOW_HOSTS`); blanks between commas are ignored."""
    return parse_entries(part for part in text.split(",") if part.strip())


def name(host: str, port: int) -> str:
    """A host and port as people see and allow it: `host` for ports 80 and 443, else `host:port`."""
    shown = host.lower().rstrip(".")
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"  # an IPv6 address
    return shown if port in WEB_PORTS else f"{shown}:{port}"


def url_entry(url: str) -> str:
    """The entry that opens the host and port of `url` (a package index), e.g. `pypi.internal:3141`."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url.strip()!r} is not an http:// or https:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"{url.strip()!r}: bad port") from exc
    return parse_entry(name(parts.hostname, port))


def is_wildcard(entry: str) -> bool:
    return entry.startswith("*.")


def _host(host: str, text: str) -> str:
    if host.startswith("["):
        return f"[{_ipv6(host[1:-1], text)}]"
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return _domain(host, text)


def _ipv6(address: str, text: str) -> str:
    try:
        return ipaddress.IPv6Address(address).compressed
    except ValueError as exc:
        raise ValueError(f"{text.strip()!r}: {address!r} is not an IPv6 address") from exc


def _domain(domain: str, text: str) -> str:
    domain = domain.rstrip(".")
    labels = domain.split(".")
    if not domain or len(domain) > _MAX_NAME or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{text.strip()!r}: {domain or '(nothing)'!r} is not a host name")
    if labels[-1].isdigit():
        raise ValueError(f"{text.strip()!r}: {domain!r} is neither a host name nor an IPv4 address")
    return domain


def _port(port: str, text: str) -> int:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text.strip()!r}: the port must be a number from 1 to 65535")
    return int(port)
