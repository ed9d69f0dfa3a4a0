"""Added latency of the egress proxy: an HTTP GET from the sandbox through it, against a direct one.

Run: `python -m bench.egress` (needs the Docker engine and the sandbox image). Side by side in one run,
same engine, image and data server (on this machine's address on the egress network): the same code
does 200 GETs in a warm sandbox on network `bridge` (direct) and on network `proxy` (relay → squid,
grant checked by the helper), timing each request inside the sandbox. Target: ≤ 5 ms added at p50.
"""

from __future__ import annotations

import statistics
import uuid

import docker

from agentbot.conversation.code import CodeBlock, EgressGrant
from agentbot.sandbox.docker import DockerExecutor
from agentbot.sandbox.egress.proxy import EgressProxy, ProxyOptions
from tests.fakes.package_index import DataLog, data_server

IMAGE = "agentbot-sandbox:latest"
REQUESTS = 200
CODE = """
import time, urllib.request
times = []
for _ in range({n}):
    started = time.perf_counter()
    with urllib.request.urlopen("{url}", timeout=5) as reply:
        reply.read()
    times.append((time.perf_counter() - started) * 1000)
print(" ".join(f"{{t:.3f}}" for t in times))
"""


def measure(executor: DockerExecutor, url: str, grant: EgressGrant) -> list[float]:
    workspace = f"bench-egress-{uuid.uuid4().hex[:8]}"
    block = CodeBlock(code=CODE.format(n=REQUESTS, url=url), language="python")
    try:
        executor.run(workspace, [CodeBlock(code="print(1)", language="python")], grant=grant)  # warm up
        result = executor.run(workspace, [block], grant=grant)
        return [float(t) for t in result.output.split()]
    finally:
        executor.remove_workspace(workspace)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    client = docker.from_env()
    gateway = str(EgressProxy(ProxyOptions(image=IMAGE)).gateways(client.api)[0])
    with data_server(DataLog(), host=gateway) as server:
        url = f"{server.url}/prices.csv"
        entry = f"{gateway}:{server.port}"
        grant = EgressGrant(hosts=(entry,), private_hosts=(entry,))
        direct = measure(DockerExecutor(image=IMAGE, network="bridge", client=client), url, grant)
        proxied = measure(DockerExecutor(image=IMAGE, network="proxy", client=client), url, grant)
    print(f"{REQUESTS} GETs from a warm sandbox to a data server on this machine (ms per request)")
    print(f"{'network':<24}{'p50':>8}{'p99':>8}{'mean':>8}")
    for name, times in (("bridge (direct)", direct), ("proxy (relay + squid)", proxied)):
        p50, p99, mean = percentile(times, 0.5), percentile(times, 0.99), statistics.mean(times)
        print(f"{name:<24}{p50:>8.2f}{p99:>8.2f}{mean:>8.2f}")
    added = percentile(proxied, 0.5) - percentile(direct, 0.5)
    print(f"added by the proxy at p50: {added:.2f} ms (target <= 5 ms)")


if __name__ == "__main__":
    main()
