"""What a run's network is and did, in words: the Run card's network line and each result's audit line."""

from __future__ import annotations

from agentbot.conversation.code import EgressReport
from agentbot.conversation.state import EgressState

MAX_NAMED = 10  # hosts named per list on one line; the rest are counted


def network_line(egress: EgressState) -> str:
    """The network a run will have, e.g. `network: proxy — allowed: a, b` (shown on every Run card)."""
    if egress.network == "none":
        return "network: none (no internet)"
    if egress.network == "bridge":
        return "network: bridge (open)"
    allowed = (*egress.operator_hosts, *egress.thread_hosts)
    named = _names(tuple(dict.fromkeys(allowed)))
    return (
        f"network: {egress.network} — allowed: {named}"
        if named
        else f"network: {egress.network} — no host allowed"
    )


def audit_line(report: EgressReport | None) -> str:
    """The hosts a run contacted and was refused, and any cap it hit; "" when it used no network."""
    if report is None:
        return ""
    parts = []
    if report.contacted:
        parts.append(f"contacted: {_names(report.contacted)}")
    if report.blocked:
        parts.append(f"blocked: {_names(report.blocked)}")
    parts.extend(report.notes)
    return " · ".join(parts)


def transcript_line(report: EgressReport | None) -> str:
    """The audit as the stored execution message (and so the assistant) carries it."""
    line = audit_line(report)
    return f"Network — {line}" if line else ""


def kept_blocked_line(hosts: tuple[str, ...], *, expired: bool) -> str:
    """The line the assistant gets with a refused run's result, once nobody allowed its hosts."""
    why = "nobody allowed them before the approval expired" if expired else "the people kept them blocked"
    return f"These hosts were blocked by the egress proxy and stay blocked ({why}): {', '.join(hosts)}"


def _names(hosts: tuple[str, ...]) -> str:
    shown = ", ".join(hosts[:MAX_NAMED])
    more = len(hosts) - MAX_NAMED
    return f"{shown} and {more} more" if more > 0 else shown
