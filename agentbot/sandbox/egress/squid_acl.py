"""Squid's external ACL helper: one line in (`credentials host port data`), `OK`/`ERR` out.

Runs inside the proxy container (`python3 -m agentbot.sandbox.egress.squid_acl`), stdlib only. Squid
starts one such process (`children-max=1`), so each run's request count is exact. The verdict and the
run's label go back as `log=`, which squid writes into the access log (`%ea`): that is the per-run
audit the worker reads. Credentials are never written anywhere.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO
from urllib.parse import unquote

from agentbot.sandbox.egress.grant import Decider, Never

SECRET_ENV = "AGENTBOT_EGRESS_SECRET"
NEVER_ENV = "AGENTBOT_EGRESS_NEVER"


def answer(decider: Decider, line: str) -> str:
    """The reply to one request line from squid."""
    parts = line.split()
    if len(parts) < 3 or not parts[2].isdigit():  # credentials, host, port
        return "BH message=malformed"
    credentials, host, port = unquote(parts[0]), unquote(parts[1]), int(parts[2])
    if parts[3:4] == ["exact"]:  # the second question: may this private address be opened?
        verdict, label = decider.exact(credentials, host, port)
    else:
        verdict, label = decider.decide(credentials, host, port)
    result = "OK" if verdict == "allowed" else "ERR"
    return f"{result} log={label}|{verdict}"


def serve(decider: Decider, lines: TextIO, out: TextIO) -> None:
    for line in lines:
        out.write(answer(decider, line) + "\n")
        out.flush()


def main() -> None:
    secret = os.environ.pop(SECRET_ENV, "")
    if not secret:
        sys.stderr.write("squid_acl: no secret: every request is refused\n")
    decider = Decider(secret=secret.encode(), never=Never.parse(os.environ.get(NEVER_ENV, "")))
    serve(decider, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
