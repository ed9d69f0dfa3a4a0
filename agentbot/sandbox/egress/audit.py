"""One run's network audit from the proxy's access log: pure parsing, so a table test can read it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from agentbot.conversation import hosts
from agentbot.conversation.code import EgressReport
from agentbot.sandbox.egress.grant import is_ip_literal

_FIELDS = 9  # see squid.LOG_FORMAT
ASKABLE = {"denied", "private"}


@dataclass(frozen=True)
class Request:
    """One line of the access log: a request (or CONNECT tunnel) of a run, and what became of it."""

    verdict: str
    method: str
    host: str
    port: int
    status: int
    bytes_out: int
    bytes_in: int

    @property
    def name(self) -> str:
        return hosts.name(self.host, self.port)  # as people allow it: the thread's entries match

    @property
    def refused(self) -> bool:
        """Refused by the proxy: by the grant, or (verdict `allowed`, status 403) by squid's address rules."""
        return self.verdict != "allowed" or self.status == 403  # squid's "denied"


def parse(log: str, label: str) -> list[Request]:
    """The requests of the run `label` in squid's access log (other runs' lines are skipped)."""
    requests = []
    for line in log.splitlines():
        fields = line.split()
        if len(fields) != _FIELDS:
            continue
        run, _, verdict = unquote(fields[1]).partition("|")
        if run != label or not fields[4].isdigit():
            continue
        requests.append(
            Request(
                verdict=verdict,
                method=fields[2],
                host=fields[3].strip("[]").lower(),
                port=int(fields[4]),
                status=_int(fields[5]),
                bytes_out=_int(fields[7]),
                bytes_in=_int(fields[8]),
            )
        )
    return requests


def report(requests: list[Request], *, people_may_open_private: bool, max_bytes: int) -> EgressReport:
    """Contacted and blocked hosts, which of the blocked people may allow, and the caps that were hit."""
    hosts = [r for r in requests if r.verdict != "bytes"]  # the gate's cap line names no host
    contacted = _names(r for r in hosts if not r.refused)
    blocked = _names(r for r in hosts if r.refused)
    askable = _names(r for r in requests if r.refused and _askable(r, people_may_open_private))
    notes = []
    if any(r.verdict == "cap" for r in requests):
        notes.append("[agentbot] the run reached its limit of connections through the egress proxy.")
    total = sum(r.bytes_in + r.bytes_out for r in requests if not r.refused)
    if any(r.verdict == "bytes" for r in requests) or total > max_bytes:
        notes.append(
            f"[agentbot] the run reached its cap of {max_bytes} bytes through the egress proxy; "
            "its connections were closed."
        )
    return EgressReport(contacted=contacted, blocked=blocked, askable=askable, notes=tuple(notes))


def _askable(request: Request, people_may_open_private: bool) -> bool:
    if request.verdict == "private" or (request.verdict == "denied" and is_ip_literal(request.host)):
        return people_may_open_private
    return request.verdict == "denied"


def _names(requests: object) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.name for r in requests))  # type: ignore[attr-defined]


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0
