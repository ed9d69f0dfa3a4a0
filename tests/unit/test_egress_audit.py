"""Table tests of the proxy's helper protocol, its squid.conf, and the per-run audit of its log."""

from __future__ import annotations

import base64
import io

import pytest

from agentbot.sandbox.egress import audit, squid
from agentbot.sandbox.egress.grant import Decider, Grant, Never, sign
from agentbot.sandbox.egress.squid_acl import answer, serve

SECRET = b"s"


def line(grant: Grant, host: str, port: int, data: str = "-") -> str:
    token = base64.b64encode(sign(SECRET, grant).encode()).decode()
    return f"Basic%20{token} {host} {port} {data}"


def public_dns(host: str) -> list:  # type: ignore[type-arg]
    import ipaddress

    return [ipaddress.ip_address("93.184.216.34")]


def test_the_helper_answers_ok_or_err_with_the_runs_label() -> None:
    decider = Decider(secret=SECRET, resolve=public_dns, clock=lambda: 0.0)
    g = Grant("ws-r1", 10.0, ("files.example.org",))
    assert answer(decider, line(g, "files.example.org", 443)) == "OK log=ws-r1|allowed"
    assert answer(decider, line(g, "other.example.org", 443)) == "ERR log=ws-r1|denied"
    assert answer(decider, line(g, "files.example.org", 443, "exact")) == "ERR log=ws-r1|private"
    assert answer(decider, "nonsense") == "BH message=malformed"


def test_the_helper_serves_line_by_line() -> None:
    decider = Decider(secret=SECRET, resolve=public_dns, clock=lambda: 0.0)
    g = Grant("ws-r1", 10.0, ("a.example.org",))
    out = io.StringIO()
    serve(
        decider, io.StringIO(line(g, "a.example.org", 80) + "\n" + line(g, "b.example.org", 80) + "\n"), out
    )
    assert out.getvalue().splitlines() == ["OK log=ws-r1|allowed", "ERR log=ws-r1|denied"]


def test_squid_conf_asks_the_helper_first_and_shuts_never_endpoints() -> None:
    conf = squid.render(Never.parse("172.18.0.1:6379"), max_reply_bytes=1000)
    rules = [text for text in conf.splitlines() if text.startswith("http_access")]
    assert rules[:3] == ["http_access deny manager", "http_access deny !granted", "http_access deny never"]
    assert rules[-1] == "http_access allow all"
    assert "http_access deny never_host_0 never_port_0" in rules
    assert "acl never_host_0 dst 172.18.0.1" in conf
    assert "169.254.0.0/16" in conf.split("acl never dst", 1)[1].splitlines()[0]
    assert "http_port 127.0.0.1:3128" in conf
    assert "reply_body_max_size 1000 bytes" in conf


LOG = "\n".join(
    [
        "1796057239.591 ws-r1%7Cdenied GET pypi.internal 8080 403 TCP_DENIED 284 3454",
        "1796057239.601 ws-r1%7Cprivate GET 172.17.0.1 8765 403 TCP_DENIED 312 3454",
        "1796057239.612 ws-r1%7Callowed CONNECT files.example.org 443 200 TCP_TUNNEL 344 1377",
        "1796057239.619 ws-r1%7Cnever GET 169.254.169.254 80 403 TCP_DENIED 338 3452",
        "1796057239.626 ws-r1%7Callowed GET data.example.org 80 403 TCP_DENIED 344 3454",
        "1796057239.636 ws-r2%7Callowed GET other.example.org 443 200 TCP_MISS 338 3452",
        "1796057239.640 - GET x.example.org 80 403 TCP_DENIED 1 1",
        "a line squid wrote that is not an access line",
        "1796057239.650 ws-r1%7Ccap CONNECT files.example.org 443 403 TCP_DENIED 10 10",
    ]
)


def test_the_audit_keeps_only_its_runs_lines() -> None:
    hosts = [r.name for r in audit.parse(LOG, "ws-r1")]
    assert hosts == [
        "pypi.internal:8080",
        "172.17.0.1:8765",
        "files.example.org",
        "169.254.169.254",
        "data.example.org",
        "files.example.org",
    ]


@pytest.mark.parametrize(
    ("private_ok", "askable"),
    [(False, ("pypi.internal:8080",)), (True, ("pypi.internal:8080", "172.17.0.1:8765"))],
)
def test_the_report_says_what_was_contacted_blocked_and_askable(
    private_ok: bool, askable: tuple[str, ...]
) -> None:
    report = audit.report(audit.parse(LOG, "ws-r1"), people_may_open_private=private_ok, max_bytes=10**9)
    assert report.contacted == ("files.example.org",)
    assert report.blocked == (
        "pypi.internal:8080",
        "172.17.0.1:8765",
        "169.254.169.254",
        "data.example.org",
        "files.example.org",
    )
    assert report.askable == askable
    assert report.notes == ("[agentbot] the run reached its limit of connections through the egress proxy.",)


def test_the_report_notes_a_run_over_its_byte_cap() -> None:
    report = audit.report(audit.parse(LOG, "ws-r1"), people_may_open_private=False, max_bytes=1000)
    assert any("cap of 1000 bytes" in note for note in report.notes)


def test_the_gates_cap_line_is_a_note_not_a_host() -> None:
    log = "1796057239.700 ws-r1%7Cbytes GATE - 0 403 GATE_CAP 2000 0\n" + LOG
    report = audit.report(audit.parse(log, "ws-r1"), people_may_open_private=False, max_bytes=10**9)
    assert "-" not in report.blocked and "-:0" not in report.blocked
    assert any("cap of 1000000000 bytes" in note for note in report.notes)
