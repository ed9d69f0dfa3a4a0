"""Downloads of files people share in Slack, with the bot token that Slack's file hosts require.

The token must reach Slack and nothing else. `requests` drops the `Authorization` header when a
redirect leaves the origin (another host, port or scheme: `Session.should_strip_auth`), where
`urllib` forwards it to any host it is redirected to. Same-origin redirects keep the header.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

MAX_REDIRECTS = 5
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    """A response body (at most `limit + 1` bytes, so "too big" is visible) and its media type."""

    data: bytes
    content_type: str


def fetch(url: str, *, token: str, limit: int, timeout: float = 60.0) -> Fetched:
    """GET `url` with the bot token; raises `requests.RequestException` on transport or HTTP errors."""
    with _session() as session:
        headers = {"Authorization": f"Bearer {token}"}
        with session.get(url, headers=headers, timeout=timeout, stream=True) as response:
            response.raise_for_status()
            return Fetched(_read(response, limit), _media_type(response.headers.get("Content-Type", "")))


def _session() -> requests.Session:
    session = requests.Session()
    # No proxies, netrc credentials or CA bundles from the environment: settings.py is the one reader,
    # and a netrc entry would be re-attached to a redirect that the header was stripped from.
    session.trust_env = False
    session.max_redirects = MAX_REDIRECTS
    return session


def _read(response: requests.Response, limit: int) -> bytes:
    data = bytearray()
    for chunk in response.iter_content(CHUNK):
        data += chunk
        if len(data) > limit:
            break
    return bytes(data[: limit + 1])


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()
