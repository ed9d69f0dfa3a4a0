"""Benchmark (not a test): our DockerExecutor against AG2's DockerCommandLineCodeExecutor, same engine/image.

Run-to-result latency of the same code blocks, median of N runs after a warm-up, printed as a markdown
table. AG2 runs its usual way: one warm container, the work dir bind-mounted from the host, root-less
only because our image says so, with a network, no limits. Ours runs hardened (see agentbot/sandbox/docker/)
and also returns the chart as an artifact.

    pip install autogen==0.14.1
    python bench/sandbox_vs_autogen.py [--runs 20] [--image agentbot-sandbox:latest] [--cpus 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

from agentbot.conversation.code import CodeBlock
from agentbot.sandbox.docker import DockerExecutor

CASES = {
    "print(1)": "print(1)",
    "matplotlib chart (plt.show)": (
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('bench')\nplt.show()\nprint('done')"
    ),
}


def median_ms(call: Callable[[], None], runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def bench_ours(image: str, runs: int, cpus: float) -> dict[str, float]:
    executor = DockerExecutor(image=image, timeout=60, cpus=cpus)
    workspace = f"bench-{uuid.uuid4().hex[:8]}"
    results = {}
    try:
        for label, code in CASES.items():

            def call(code: str = code) -> None:
                result = executor.run(workspace, [CodeBlock(code=code, language="python")])
                assert result.exit_code == 0, result.output

            results[label] = median_ms(call, runs)
    finally:
        executor.remove_workspace(workspace)
    return results


def bench_ag2(image: str, runs: int) -> dict[str, float]:
    from autogen.coding import CodeBlock as AG2CodeBlock
    from autogen.coding import DockerCommandLineCodeExecutor

    results = {}
    with tempfile.TemporaryDirectory() as work_dir:
        os.chmod(work_dir, 0o777)  # our image runs as 1000; AG2 writes files on the host as us
        executor = DockerCommandLineCodeExecutor(image=image, timeout=60, work_dir=work_dir)
        try:
            for label, code in CASES.items():

                def call(code: str = code) -> None:
                    result = executor.execute_code_blocks([AG2CodeBlock(code=code, language="python")])
                    assert result.exit_code == 0, result.output

                results[label] = median_ms(call, runs)
        finally:
            executor.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--image", default="agentbot-sandbox:latest")
    parser.add_argument("--cpus", type=float, default=1.0, help="our CPU limit (AG2 sets none)")
    args = parser.parse_args()
    ag2 = bench_ag2(args.image, args.runs)
    ours = bench_ours(args.image, args.runs, args.cpus)
    print(f"median of {args.runs} runs, image {args.image}, our CPU limit {args.cpus:g}\n")
    print("| code | AG2 DockerCommandLineCodeExecutor | agentbot DockerExecutor | ours / AG2 |")
    print("|---|---:|---:|---:|")
    for label in CASES:
        print(f"| {label} | {ag2[label]:.0f} ms | {ours[label]:.0f} ms | {ours[label] / ag2[label]:.2f} |")


if __name__ == "__main__":
    main()
