"""Benchmark: the engine's own overhead per step (real Redis, real RQ worker, zero-latency LLM).

    python -m bench.engine_overhead [--conversations 100] [--steps 10] [--worker simple|fork]

Each conversation runs `--steps` assistant turns in NEVER mode (auto replies, no code), so every step
is: load state, apply, call the (instant, in-process) LLM, save, deliver posts, enqueue the next step.
Prints p50 and p99 of the step time inside the worker and of enqueue-to-done, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime

import redis
from rq.job import Job
from rq.registry import FinishedJobRegistry
from rq.serializers import JSONSerializer

from agentbot import runtime
from agentbot.conversation.code import Artifact
from agentbot.conversation.driver import submit
from agentbot.conversation.events import FileRef, Start
from agentbot.conversation.llm import ChatMessage, Completion, ToolSpec
from agentbot.conversation.ports import Activity
from agentbot.conversation.posts import Post
from agentbot.conversation.state import ConversationKey
from agentbot.settings import load_settings
from agentbot.workers import run_worker


class InstantLLM:
    """A zero-latency model: the engine's overhead is all that is left to measure."""

    def complete(
        self, messages: Sequence[ChatMessage], *, model: str | None = None, tools: Sequence[ToolSpec] = ()
    ) -> Completion:
        return Completion(
            content="Thinking about it.", model="instant", prompt_tokens=10, completion_tokens=3
        )


class NullPlatform:
    """Accepts every post at once (Slack's latency is not the engine's)."""

    def post(self, key: ConversationKey, post: Post, *, effect_id: str) -> str:
        return effect_id

    def find_posted(self, key: ConversationKey, effect_id: str) -> str | None:
        return None

    def update(self, key: ConversationKey, message_id: str, post: Post) -> None:
        return None

    def upload(
        self, key: ConversationKey, artifacts: Sequence[Artifact], *, run_id: str, resume: bool = False
    ) -> None:
        return None

    def download(self, file: FileRef) -> bytes:
        return b""

    def set_status(self, key: ConversationKey, text: str, *, activity: Activity = "") -> None:
        return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def private_redis() -> tuple[str, subprocess.Popen[bytes], str]:
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    port = 20000 + os.getpid() % 10000
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return url, proc, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--worker", choices=["simple", "fork"], default="simple")
    args = parser.parse_args()
    url, server, workdir = private_redis()
    try:
        client = redis.Redis.from_url(url)
        settings = load_settings(
            redis_url=url, human_input_mode="NEVER", code_approval="never", executor="none",
            max_consecutive_auto_reply=args.steps - 1,
        )  # fmt: skip
        rt = runtime.Runtime(
            settings=settings,
            redis=client,
            platform=NullPlatform(),
            embedded=False,
            llm_override=InstantLLM(),
        )
        runtime.install(rt)
        started = time.perf_counter()
        for n in range(args.conversations):
            key = ConversationKey(team_id="T", channel_id=f"C{n % 10}", thread_ts=f"{n}.0")
            submit(rt.store, rt.queue, key, Start(event_id=f"e{n}", user_id="U", text="go"))
            run_worker(rt, burst=True, simple=args.worker == "simple")
        elapsed = time.perf_counter() - started
        report(rt, args, elapsed)
    finally:
        server.terminate()
        shutil.rmtree(workdir, ignore_errors=True)


def report(rt: runtime.Runtime, args: argparse.Namespace, elapsed: float) -> None:
    registry = FinishedJobRegistry(queue=rt.queue.queue)
    jobs = Job.fetch_many(registry.get_job_ids(), connection=rt.redis, serializer=JSONSerializer)
    step_ms = [_ms(job.started_at, job.ended_at) for job in jobs if job]
    total_ms = [_ms(job.enqueued_at, job.ended_at) for job in jobs if job]
    print(f"engine overhead per step ({len(step_ms)} steps, {args.worker} worker, real Redis, instant LLM)")
    print("| measure | p50 ms | p99 ms | target |")
    print("|---|---|---|---|")
    p50, p99 = percentile(step_ms, 50), percentile(step_ms, 99)
    print(f"| step inside the worker | {p50:.2f} | {p99:.2f} | p50 < 10, p99 < 50 |")
    print(f"| enqueue to done | {percentile(total_ms, 50):.2f} | {percentile(total_ms, 99):.2f} | |")
    print(f"throughput: {len(step_ms) / elapsed:.0f} steps/s; mean step {statistics.mean(step_ms):.2f} ms")


def _ms(start: datetime | None, end: datetime | None) -> float:
    assert start is not None and end is not None
    return (end - start).total_seconds() * 1000


if __name__ == "__main__":
    main()
