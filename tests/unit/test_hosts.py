"""Allowed-host entries: parsed, normalised and named as people see them (table tests)."""

from __future__ import annotations

import pytest

from agentbot.conversation import hosts


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("data.example.org", "data.example.org"),
        ("  Data.Example.ORG.  ", "data.example.org"),
        ("*.example.org", "*.example.org"),
        ("*.Example.org.", "*.example.org"),
        ("data.internal:8080", "data.internal:8080"),
        ("data.internal:443", "data.internal:443"),  # one port only: not widened to 80
        ("localhost:3141", "localhost:3141"),
        ("10.0.0.5", "10.0.0.5"),
        ("10.0.0.5:9000", "10.0.0.5:9000"),
        ("[FD00::0005]", "[fd00::5]"),
        ("[fd00::5]:8080", "[fd00::5]:8080"),
        ("host.docker.internal:8000", "host.docker.internal:8000"),
        ("x-1.y_", None),  # underscore is not in a host name
    ],
)
def test_parse_entry_normalises_or_refuses(text: str, entry: str | None) -> None:
    if entry is None:
        with pytest.raises(ValueError, match="not a host name"):
            hosts.parse_entry(text)
    else:
        assert hosts.parse_entry(text) == entry


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty host entry"),
        ("https://data.example.org", "is not a host entry"),
        ("data.example.org/path", "is not a host entry"),
        ("user@data.example.org", "is not a host entry"),
        ("data example.org", "is not a host entry"),
        ("*", "not a host name"),
        ("*.", "not a host name"),
        ("a.*.example.org", "not a host name"),
        ("*.example.org:8080", "not a host name"),
        ("-bad.example.org", "not a host name"),
        ("a..b", "not a host name"),
        ("x" * 64 + ".org", "not a host name"),
        ("10.0.0.300", "neither a host name nor an IPv4 address"),
        ("*.10.0.0.1", "neither a host name nor an IPv4 address"),
        ("fd00::5", "IPv6 address in brackets"),
        ("[fd00::zz]", "is not an IPv6 address"),
        ("data.internal:", "port must be a number"),
        ("data.internal:0", "port must be a number"),
        ("data.internal:65536", "port must be a number"),
        ("data.internal:http", "port must be a number"),
    ],
)
def test_a_bad_entry_is_one_line_naming_it(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        hosts.parse_entry(text)
    assert "\n" not in str(caught.value)


def test_parse_list_splits_commas_and_drops_blanks_and_repeats() -> None:
    assert hosts.parse_list(" a.org, ,*.b.org,A.org ,c.org:81,") == ("a.org", "*.b.org", "c.org:81")
    assert hosts.parse_list("") == ()
    with pytest.raises(ValueError, match=r"'https://x\.org' is not a host entry"):
        hosts.parse_list("a.org, https://x.org")


@pytest.mark.parametrize(
    ("host", "port", "shown"),
    [
        ("data.example.org", 443, "data.example.org"),
        ("data.example.org", 80, "data.example.org"),
        ("Data.Example.org.", 8080, "data.example.org:8080"),
        ("10.0.0.5", 22, "10.0.0.5:22"),
        ("fd00::5", 443, "[fd00::5]"),
        ("fd00::5", 8443, "[fd00::5]:8443"),
    ],
)
def test_name_shows_web_ports_as_the_bare_host(host: str, port: int, shown: str) -> None:
    assert hosts.name(host, port) == shown


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("https://pypi.internal/simple/", "pypi.internal"),
        ("http://pypi.internal/simple", "pypi.internal"),
        ("http://127.0.0.1:3141/root/pypi/+simple/", "127.0.0.1:3141"),
        ("https://Mirror.Corp:8443/simple", "mirror.corp:8443"),
        ("http://user:secret@mirror.corp:8080/simple", "mirror.corp:8080"),
    ],
)
def test_url_entry_is_the_host_and_port_of_an_index(url: str, entry: str) -> None:
    assert hosts.url_entry(url) == entry


@pytest.mark.parametrize("url", ["ftp://mirror.corp/", "mirror.corp/simple", "http://", "http://h:99999/"])
def test_url_entry_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(ValueError):
        hosts.url_entry(url)
