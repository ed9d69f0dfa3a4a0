"""Benchmark (not a test): our DockerExecutor against AG2's DockerCommandLineCodeExecutor, same engine/image.

Run-to-result latency of the same code blocks, side by side in one run, median and p99 of N runs after a
warm-up, printed as a markdown table with the targets of issue 11, then the memory of an idle warm
container and of the warm pool. AG2 runs its usual way: one warm container, the work dir bind-mounted
from the host, root-less only because our image says so, with a network, no limits. Ours runs hardened
(see agentbot/sandbox/docker/) and also returns the chart as an artifact.

Between runs both sides wait `--pause` seconds, as people do while they read a result: our next
supervisor imports numpy, pandas and matplotlib then (see supervisor.py). `--pause 0` measures
back-to-back runs, where a run may wait for those imports.

Cases:
  print(1), matplotlib chart   a warm conversation: ours by its supervisor, AG2 by `docker exec`
  first run                    print(1) in a new conversation: ours claims a container of the warm
                               pool; AG2 starts a fresh container (its executor's constructor) and runs

    pip install autogen==0.14.1
    python -m bench.sandbox_vs_autogen [--runs 20] [--pause 2] [--image agentbot-sandbox:latest] [--cpus 1]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker

from agentbot.conversation.code import CodeBlock
from agentbot.sandbox.docker import DockerExecutor
from agentbot.sandbox.docker.containers import workspace_of

PRINT = "print(1)"
CHART = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('bench')\nplt.show()\nprint('done')"
CASES = {"print(1)": PRINT, "matplotlib chart (plt.show)": CHART}
FIRST = "first run of a new conversation"
TARGETS = {"print(1)": 0.5, "matplotlib chart (plt.show)": 0.3, FIRST: 1.0}
POOL = 2

Timings = dict[str, list[float]]


def timed(call: Callable[[], object], runs: int, pause: float, warmup: int = 2) -> list[float]:
    """Milliseconds of `runs` calls after `warmup` ones, `pause` seconds apart (never timed)."""

    def measure() -> float:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000

    return measured(measure, runs, pause, warmup)


def measured(call: Callable[[], float], runs: int, pause: float, warmup: int = 2) -> list[float]:
    """What `runs` calls say they took (in ms), after `warmup` ones, `pause` seconds apart."""
    for _ in range(warmup):
        call()
        time.sleep(pause)
    timings = []
    for _ in range(runs):
        timings.append(call())
        time.sleep(pause)
    return timings


def p99(values: list[float]) -> float:
    """The 99th percentile (with 20 runs: the slowest but a fraction)."""
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


def memory_mib(client: docker.DockerClient, container: str) -> float:
    """What `docker stats` shows: the cgroup's usage less its inactive file pages."""
    stats: dict[str, Any] = client.api.stats(container, stream=False)["memory_stats"]
    inactive = stats.get("stats", {}).get("inactive_file", 0)
    return float(stats.get("usage", 0) - inactive) / 2**20


# -- ours ----------------------------------------------------------------------------------------


def bench_ours(image: str, runs: int, pause: float, cpus: float) -> tuple[Timings, dict[str, float]]:
    client = docker.from_env(timeout=60)
    executor = DockerExecutor(image=image, timeout=60, cpus=cpus, pool=POOL, client=client)
    executor.housekeeping()  # what the workers' housekeeping keeps: a full pool
    results: Timings = {}
    memory: dict[str, float] = {}
    workspace = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        for label, code in CASES.items():
            results[label] = timed(functools.partial(run_ours, executor, workspace, code), runs, pause)
        time.sleep(max(pause, 3.0))  # the next supervisor has imported: an idle warm container
        memory["idle warm container"] = memory_mib(client, f"agentbot-sbx-{workspace}")
        results[FIRST] = measured(lambda: first_run_ours(executor), runs, max(pause, 3.0), warmup=1)
        executor.settle()
        pool = executor.containers.pool(None)
        memory[f"pool ({len(pool)} containers)"] = sum(memory_mib(client, info["Id"]) for info in pool)
    finally:
        executor.remove_workspace(workspace)
        for info in executor.containers.pool(None):
            executor.containers.remove_workspace(workspace_of(info))
    return results, memory


def run_ours(executor: DockerExecutor, workspace: str, code: str) -> None:
    result = executor.run(workspace, [CodeBlock(code=code, language="python")])
    assert result.exit_code == 0, result.output
    assert "plt" not in code or result.artifacts, "no chart"


def first_run_ours(executor: DockerExecutor) -> float:
    """A new conversation's first run (the pool refills meanwhile, in the background); its ms."""
    workspace = f"bench-first-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    run_ours(executor, workspace, PRINT)
    elapsed = (time.perf_counter() - started) * 1000
    executor.remove_workspace(workspace)
    return elapsed


# -- AG2 -----------------------------------------------------------------------------------------


@contextmanager
def ag2_executor(image: str, work_dir: str) -> Iterator[Any]:
    from autogen.coding import DockerCommandLineCodeExecutor  # installed for this bench only

    executor = DockerCommandLineCodeExecutor(image=image, timeout=60, work_dir=work_dir)
    try:
        yield executor
    finally:
        executor.stop()


def run_ag2(executor: Any, code: str) -> None:
    from autogen.coding import CodeBlock as AG2CodeBlock

    result = executor.execute_code_blocks([AG2CodeBlock(code=code, language="python")])
    assert result.exit_code == 0, result.output


def bench_ag2(image: str, runs: int, pause: float) -> tuple[Timings, dict[str, float]]:
    results: Timings = {}
    memory: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work_dir:
        os.chmod(work_dir, 0o777)  # our image runs as 1000; AG2 writes files on the host as us
        with ag2_executor(image, work_dir) as executor:
            for label, code in CASES.items():
                results[label] = timed(functools.partial(run_ag2, executor, code), runs, pause)
            memory["idle warm container"] = memory_mib(docker.from_env(), executor._container.id)
        results[FIRST] = measured(lambda: first_run_ag2(image, work_dir), runs, pause, warmup=1)
    return results, memory


def first_run_ag2(image: str, work_dir: str) -> float:
    """A fresh container (the executor's constructor starts it) and its first run; its ms."""
    started = time.perf_counter()
    with ag2_executor(image, work_dir) as executor:
        run_ag2(executor, PRINT)
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed


# -- report --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between runs (people reading)")
    parser.add_argument("--image", default="agentbot-sandbox:latest")
    parser.add_argument("--cpus", type=float, default=1.0, help="our CPU limit (AG2 sets none)")
    args = parser.parse_args()
    ag2, ag2_memory = bench_ag2(args.image, args.runs, args.pause)
    ours, our_memory = bench_ours(args.image, args.runs, args.pause, args.cpus)
    print(
        f"median and p99 of {args.runs} runs, {args.pause:g} s apart, image {args.image}, "
        f"our CPU limit {args.cpus:g}, our pool {POOL}\n"
    )
    print("| case | AG2 median | AG2 p99 | agentbot median | agentbot p99 | ours / AG2 (median) | target |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label in [*CASES, FIRST]:
        theirs, mine = statistics.median(ag2[label]), statistics.median(ours[label])
        cells = [
            f"{theirs:.0f} ms",
            f"{p99(ag2[label]):.0f} ms",
            f"{mine:.0f} ms",
            f"{p99(ours[label]):.0f} ms",
        ]
        print(f"| {label} | {' | '.join(cells)} | {mine / theirs:.2f} | ≤ {TARGETS[label]:g} |")
    print("\n| memory | AG2 | agentbot |\n|---|---:|---:|")
    for label, mib in our_memory.items():
        theirs_mib = ag2_memory.get(label)
        print(f"| {label} | {f'{theirs_mib:.0f} MiB' if theirs_mib is not None else '-'} | {mib:.0f} MiB |")


if __name__ == "__main__":
    main()
