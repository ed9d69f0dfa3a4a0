"""The egress proxy's squid.conf, rendered from the never-list: pure, so a table test can read it.

Squid (Debian's package) does the proxying: HTTP, CONNECT for HTTPS, DNS, and the address rules on the
*resolved* destination (`dst`), so a DNS answer cannot lead a granted name to a never-address. The
per-run decision comes from `squid_acl.py` (the grant in the `Proxy-Authorization` header), called
first so that every request, refused or not, carries its run's label in the access log.
"""

from __future__ import annotations

from agentbot.sandbox.egress.grant import NEVER_NETWORKS, PRIVATE_NETWORKS, Never

SQUID_PORT = 3128
# One line per request: time, "label|verdict" from the helper, method, host, port, status, squid's
# result code, bytes from and to the client. No URL path, query or header: they may hold secrets.
LOG_FORMAT = "%ts.%03tu %ea %>rm %>rd %>rP %>Hs %Ss %>st %<st"
HELPER = "python3 -m agentbot.sandbox.egress.squid_acl"


def render(never: Never, *, max_reply_bytes: int) -> str:
    """squid.conf for the proxy container (root read-only, /tmp a tmpfs, running as `nobody`)."""
    never_nets = [str(net) for net in NEVER_NETWORKS] + [str(address) for address in never.addresses]
    lines = [
        f"http_port 127.0.0.1:{SQUID_PORT}",
        "pid_filename /tmp/squid.pid",
        "coredump_dir /tmp",
        "cache_log stdio:/dev/stderr",
        f"logformat agentbot {LOG_FORMAT}",
        "access_log stdio:/dev/stdout agentbot",
        "buffered_logs off",
        "cache deny all",
        "cache_mem 8 MB",
        "netdb_filename none",
        "visible_hostname agentbot-egress",
        "httpd_suppress_version_string on",
        "forwarded_for delete",
        "shutdown_lifetime 1 seconds",
        f"reply_body_max_size {max_reply_bytes} bytes",
        f"request_body_max_size {max_reply_bytes} bytes",
        "external_acl_type grant ttl=0 negative_ttl=0 children-max=1 children-startup=1 "
        f"%>ha{{Proxy-Authorization}} %>rd %>rP {HELPER}",
        "acl granted external grant",
        "acl exact external grant exact",
        "acl never dst " + " ".join(never_nets),
        "acl private dst " + " ".join(str(net) for net in PRIVATE_NETWORKS),
    ]
    lines += [
        "pinger_enable off",
        "http_access deny manager",  # squid's cache manager: never served to a sandbox
        "http_access deny !granted",  # first, so that every request is logged with its run's label
        "http_access deny never",
        *_endpoint_rules(never),
        "http_access deny private !exact",
        "http_access allow all",
    ]
    return "\n".join(lines) + "\n"


def _endpoint_rules(never: Never) -> list[str]:
    """`deny` lines for never-endpoints (an address on one port, e.g. Redis on the Docker host)."""
    lines = []
    for index, (address, port) in enumerate(never.endpoints):
        lines += [
            f"acl never_host_{index} dst {address}",
            f"acl never_port_{index} port {port}",
            f"http_access deny never_host_{index} never_port_{index}",
        ]
    return lines
