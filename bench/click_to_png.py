"""Benchmark (not a test): a warm Run click to the chart's PNG in the Slack thread, against AG2's warm chart.

    python -m bench.click_to_png [--runs 20] [--pause 2] [--image agentbot-sandbox:latest]
                                 [--env NAME=VALUE ...] [--worker-args=--simple]

Issue 11's end-to-end target: a warm Run click → the PNG in the Slack thread in at most half the time
of AG2's warm chart run. Both are measured in the same run, interleaved (an AG2 run, a click, an AG2
run, ...), so load from anything else on the machine hits both alike.

Ours: the product as `tests/e2e/harness.py` starts it (a private redis-server, the fake Slack Web API,
the fake OpenAI server, `agentbot web` on gunicorn, one `python -m worker` forking a work horse per
step, the Docker executor), driven as Slack drives it. One conversation: each time a person asks for
a chart, the scripted assistant answers with the same matplotlib block as `bench.sandbox_vs_autogen`
(`plt.plot(...)`, `plt.show()`), whose approval card is then clicked (Run, signed as Slack signs). The
first card is the warm-up (the conversation's container and supervisor start); then `--runs` cards,
`--pause` s after each card appears (people read the card; the next supervisor imports meanwhile).
Timed: from just before the click's POST to the arrival of `files.completeUploadExternal` at the fake
Slack (the moment the PNG is in the thread), both by this machine's clock.

AG2: `bench.sandbox_vs_autogen`'s own measurement (AG2 0.14.1's `DockerCommandLineCodeExecutor`, one
warm container on the same image, the same block by `docker exec`), `--pause` s apart too.

Where a click's time goes, from timestamps that need no change of the product: the client's POST (the
ack), rq's job hash and result in Redis (enqueued by the web; the worker's execution created before it
forks; the horse's start), and the arrival times that the fake Slack records for each Web API call the
step makes (the card's update, the status before and after the run, the result's post, the upload).

The harness runs sandboxes without a network (`AGENTBOT_SANDBOX_NETWORK=none`, as the e2e tests do);
`--env AGENTBOT_SANDBOX_NETWORK=proxy` gives the product's default, the egress proxy (each run then
also inspects the proxy and reads its log); the proxy and pool containers it started are removed after.

    pip install autogen==0.14.1  # AG2, for this comparison only
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import docker.errors

from agentbot.sandbox.docker import DockerExecutor
from agentbot.sandbox.docker.containers import (
    EGRESS_LABEL,
    POOL_LABEL,
    ROLE_LABEL,
    SANDBOX_ROLE,
    workspace_of,
)
from bench.sandbox_vs_autogen import CHART, ag2_executor, p99, run_ag2
from tests.e2e.harness import Process, Stack
from tests.e2e.story import fenced
from tests.sandbox.docker_fixtures import IMAGE

ASK = "another chart please"
CHART_REPLY = fenced("Here is the chart.", CHART + "\n")
SCRIPT: dict[str, Any] = {
    "replies": [],
    "rules": [
        {"match": "exitcode: 0", "reply": "The chart is above. TERMINATE"},
        {"match": "exitcode:", "reply": "The code failed. TERMINATE"},
        {"match": ASK, "reply": CHART_REPLY},
    ],
    "default": "UNSCRIPTED TERMINATE",
}
TARGET = 0.5
# A click's way to the PNG as a chain of marks (each from the timestamps named in the docstring); the
# phases between consecutive marks add up to the total. The ack (the client's answer) runs alongside.
CHAIN = ["clicked", "enqueued", "picked", "started", "running", "ran", "posted", "shared"]
PHASES = {
    "enqueued": "click → step enqueued (web: verify, parse, store event + job)",
    "picked": "enqueued → job picked (worker's dequeue, rq execution)",
    "started": "picked → horse started (fork, rq's setup in the horse)",
    "running": "horse → run starts (load, apply, card update, saves, status)",
    "ran": "run: status 'running' → status '' (sandbox run, artifacts stored)",
    "posted": "status '' → result posted (saves, chat.postMessage)",
    "shared": "result posted → PNG shared (saves, upload URL, bytes, complete)",
}


@dataclass
class Click:
    """One click's timestamps (seconds since the epoch) and its total, in ms."""

    clicked: float
    acked: float
    shared: float
    marks: dict[str, float] = field(default_factory=dict)
    calls: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def total_ms(self) -> float:
        return (self.shared - self.clicked) * 1000

    def phases(self) -> dict[str, float]:
        """Milliseconds of each phase (named by the mark it ends at) whose marks were found, and the ack."""
        marks = {"clicked": self.clicked, "shared": self.shared, **self.marks}
        present = [name for name in CHAIN if name in marks]
        spans = {end: (marks[end] - marks[begin]) * 1000 for begin, end in itertools.pairwise(present)}
        spans["acked"] = (self.acked - self.clicked) * 1000
        return spans


# -- the product's side --------------------------------------------------------------------------


@dataclass
class BenchStack(Stack):
    """The e2e stack, with extra arguments for the worker command (`--worker-args`)."""

    worker_args: list[str] = field(default_factory=list)

    def start_worker(self, env: Mapping[str, str] | None = None, *, args: Sequence[str] = ()) -> Process:
        return super().start_worker(env, args=[*self.worker_args, *args])

    def close(self) -> None:
        super().close()
        if self.env.get("AGENTBOT_SANDBOX_NETWORK") == "proxy":
            self._remove_egress()

    def _remove_egress(self) -> None:
        """The egress proxy this stack's worker started and the pool containers relaying to it.

        Its configuration names this stack's Redis (gone now), so nobody else can use either.
        """
        executor = DockerExecutor()
        api = executor.containers.api
        redis = f"127.0.0.1:{self.redis_port}"
        for info in api.containers(all=True, filters={"label": f"{ROLE_LABEL}=egress"}):
            env = api.inspect_container(info["Id"])["Config"].get("Env") or []
            never = next((e.partition("=")[2] for e in env if e.startswith("AGENTBOT_EGRESS_NEVER=")), "")
            if redis not in never.split(","):
                continue
            name = info["Names"][0].lstrip("/")
            pooled = api.containers(all=True, filters={"label": [f"{ROLE_LABEL}={SANDBOX_ROLE}", POOL_LABEL]})
            for container in pooled:
                if (container.get("Labels") or {}).get(EGRESS_LABEL) == name:
                    executor.containers.remove_workspace(workspace_of(container))
            api.remove_container(info["Id"], force=True)
            with contextlib.suppress(docker.errors.APIError):
                api.remove_volume(name)


@contextmanager
def product(env: dict[str, str], worker_args: list[str]) -> Iterator[Stack]:
    with BenchStack(SCRIPT, executor="docker", workers=1, env=env, worker_args=worker_args) as stack:
        yield stack


def ask_for_card(stack: Stack, root: str | None) -> tuple[str, dict[str, Any]]:
    """A person asks for a chart (a new thread first); returns the thread and its open approval card."""
    if root is None:
        root = stack.mention(ASK, user="UANA")
    else:
        stack.wait_until(lambda: stack.settled(root), timeout=60, what="the conversation to wait for people")
        stack.reply(root, ASK, user="UANA")
    return root, stack.wait_for_card(root, timeout=60)


def click(stack: Stack, root: str, card: dict[str, Any]) -> Click:
    """Click Run; wait for the PNG to be shared; read where the time went."""
    shared_before = len(stack.calls("files.completeUploadExternal"))
    clicked = time.time()
    status = stack.click(card, "run_code", user="UANA", thread_ts=root)
    acked = time.time()
    assert status == 200, f"the click answered {status}"
    stack.wait_until(
        lambda: len(stack.calls("files.completeUploadExternal")) > shared_before,
        timeout=60,
        what="the chart's PNG shared in the thread",
    )
    calls = [c for c in stack.calls() if c["at"] >= clicked]
    complete = next(c for c in calls if c["method"] == "files.completeUploadExternal")
    result = Click(clicked=clicked, acked=acked, shared=float(complete["at"]))
    result.calls = [(float(c["at"]), c["method"], _call_note(c)) for c in calls if c["at"] <= result.shared]
    result.marks.update(_job_marks(stack, root, clicked))
    result.marks.update(_slack_marks(result.calls))
    return result


def _call_note(call: dict[str, Any]) -> str:
    args = call["args"]
    if call["method"] == "assistant.threads.setStatus":
        return repr(args.get("status", ""))
    return str(args.get("text", ""))[:40]


def _slack_marks(calls: list[tuple[float, str, str]]) -> dict[str, float]:
    """The step's Slack calls as marks: the run between its two statuses, then the result's post."""
    marks: dict[str, float] = {}
    for at, method, note in calls:
        if method == "assistant.threads.setStatus" and "running the code" in note and "running" not in marks:
            marks["running"] = at
        elif method == "assistant.threads.setStatus" and note == "''" and "running" in marks:
            marks.setdefault("ran", at)
        elif method == "chat.postMessage" and "ran" in marks and "posted" not in marks:
            marks["posted"] = at
    return marks


TIMES = ["created_at", "enqueued_at", "started_at"]


def _job_marks(stack: Stack, root: str, clicked: float) -> dict[str, float]:
    """rq's timestamps of the click's step: enqueued (web), picked (execution created), started (horse).

    Read once the step has ended (its result written): the horse goes on after the upload.
    """
    slug = stack.key(root).slug
    with stack.redis() as client:
        jobs = []
        for name in client.scan_iter(f"rq:job:step-{slug}-*"):
            fields = dict(zip(TIMES, client.hmget(name, TIMES), strict=True))
            enqueued = _epoch(fields["enqueued_at"] or fields["created_at"])
            if enqueued is not None and enqueued >= clicked - 0.05:
                jobs.append((enqueued, name.decode().removeprefix("rq:job:")))
        if not jobs:
            return {}
        enqueued, job_id = min(jobs)
        results = f"rq:results:{job_id}"
        stack.wait_until(lambda: bool(client.xlen(results)), timeout=60, what=f"the result of {job_id}")
        marks = {"enqueued": enqueued}
        started = _epoch(client.hget(f"rq:job:{job_id}", "started_at"))
        if started is not None:
            marks["started"] = started
        for _, entry in client.xrange(results, count=1):
            picked = entry.get(b"execution_started_at")
            if picked:
                marks["picked"] = float(picked)
    return marks


def _epoch(value: bytes | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.decode().replace("Z", "+00:00")).timestamp()


# -- report --------------------------------------------------------------------------------------


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ms | {p99(values):.0f} ms"


def report(
    clicks: list[Click], ag2: list[float], args: argparse.Namespace, load: tuple[float, float]
) -> None:
    ours = [c.total_ms for c in clicks]
    print(
        f"\nmedian and p99 of {len(ours)} runs, interleaved, {args.pause:g} s apart, image {args.image}; "
        f"load average {load[0]:.1f} → {load[1]:.1f}\n"
    )
    print("| | median | p99 |\n|---|---:|---:|")
    print(f"| AG2 warm chart run (docker exec) | {summary(ag2)} |")
    print(f"| agentbot warm Run click → PNG in the thread | {summary(ours)} |")
    ratio = statistics.median(ours) / statistics.median(ag2)
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"\nagentbot / AG2 (median): {ratio:.2f}, target ≤ {TARGET:g}: {verdict}")
    print(f"agentbot / AG2 (p99): {p99(ours) / p99(ag2):.2f}\n")
    print("where a click's time goes (ms):\n\n| phase | median | p99 |\n|---|---:|---:|")
    for name, label in {"acked": "the ack (POST answered, alongside)", **PHASES}.items():
        values = [c.phases()[name] for c in clicks if name in c.phases()]
        if values:
            print(f"| {label} | {summary(values)} |")
    calls = [len(c.calls) for c in clicks]
    print(f"\nSlack Web API calls per click up to the PNG: {statistics.median(calls):.0f}")
    slowest = max(clicks, key=lambda c: c.total_ms)
    print(f"\nthe slowest click ({slowest.total_ms:.0f} ms), call by call (ms after the click):")
    for at, method, note in slowest.calls:
        print(f"  {(at - slowest.clicked) * 1000:7.1f}  {method}  {note}")
    for name in ("enqueued", "picked", "started"):
        if name in slowest.marks:
            print(f"  {(slowest.marks[name] - slowest.clicked) * 1000:7.1f}  (rq: {name})")
    if args.json:
        data = {"ag2_ms": ag2, "clicks": [{**c.__dict__, "total_ms": c.total_ms} for c in clicks]}
        with open(args.json, "w") as out:
            json.dump(data, out, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between runs (people reading)")
    parser.add_argument("--image", default=IMAGE, help="the sandbox image (both sides)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for agentbot's processes")
    parser.add_argument("--worker-args", default="", help="extra arguments of `python -m worker`")
    parser.add_argument("--json", help="write every timing to this file")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    env.setdefault("AGENTBOT_SANDBOX_IMAGE", args.image)
    load_before = os.getloadavg()[0]
    clicks: list[Click] = []
    ag2: list[float] = []
    with (
        tempfile.TemporaryDirectory() as work_dir,
        product(env, shlex.split(args.worker_args)) as stack,
    ):
        os.chmod(work_dir, 0o777)  # our image runs as 1000; AG2 writes files on the host as us
        with ag2_executor(args.image, work_dir) as executor:
            for _ in range(2):  # warm-up, as bench.sandbox_vs_autogen does
                run_ag2(executor, CHART)
            root, card = ask_for_card(stack, None)
            click(stack, root, card)  # warm-up: the conversation's container and supervisor start
            for number in range(args.runs):
                time.sleep(args.pause)
                started = time.perf_counter()
                run_ag2(executor, CHART)
                ag2.append((time.perf_counter() - started) * 1000)
                root, card = ask_for_card(stack, root)
                time.sleep(args.pause)
                clicks.append(click(stack, root, card))
                print(f"run {number + 1}: AG2 {ag2[-1]:.0f} ms, click → PNG {clicks[-1].total_ms:.0f} ms")
    report(clicks, ag2, args, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
