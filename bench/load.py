"""Benchmark: many conversations at once through the Procfile's processes, with a slow model.

    python -m bench.load [--conversations 100] [--channels 10] [--workers 4] [--latency 1.0]

Starts the end-to-end stack of `tests/e2e` (a private `redis-server` with AOF, the fake Slack Web API,
`agentbot web`, `--workers` x `python -m worker`) with the fake OpenAI server in this process, whose
every answer takes `--latency` seconds. Then `--conversations` mentions arrive at once, spread over
`--channels` channels. Each conversation runs in AutoGen's NEVER mode (no human in the loop, no code):
the assistant answers three times (two auto replies in between), the third answer ends in TERMINATE,
so each conversation needs 3 model calls and the ideal completion time is
conversations x 3 x latency / workers.

Checks: every conversation finishes; no conversation interleaves with another (each thread holds
exactly its own three answers, in order, and no two model calls of one conversation overlap);
nothing is posted twice (effect ids unique). Prints completion time against the ideal and the peak
memory (RSS summed over web, workers with their forked children, and Redis). Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness import Stack
from tests.fakes.openai_server import FakeOpenAI, Reply

CALLS_PER_CONVERSATION = 3
_TAG = re.compile(r"\[(conv-\d+)\]")


@dataclass
class Model:
    """The slow model: answers `[conv-N] step k` and, at the third turn, TERMINATE; tracks overlaps."""

    active: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    peak_all: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages") or []
        task = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
        found = _TAG.search(task)
        conv = found.group(1) if found else "?"
        turn = sum(1 for m in messages if m.get("role") == "assistant") + 1
        with self.lock:
            self.active[conv] += 1
            self.calls[conv] += 1
            self.peak[conv] = max(self.peak[conv], self.active[conv])
            self.peak_all = max(self.peak_all, sum(self.active.values()))
        return Done(
            self, conv, f"[{conv}] step {turn}" + (" TERMINATE" if turn >= CALLS_PER_CONVERSATION else "")
        )

    def finished(self, conv: str) -> None:
        with self.lock:
            self.active[conv] -= 1


class Done(str):
    """A reply string that tells the model when its (latency-delayed) answer has been taken."""

    model: Model
    conv: str

    def __new__(cls, model: Model, conv: str, text: str) -> Done:
        self = super().__new__(cls, text)
        self.model, self.conv = model, conv
        return self


class TrackedOpenAI(FakeOpenAI):
    """FakeOpenAI whose requests count as active from arrival until the answer is sent."""

    def _take(self, body: dict[str, Any], headers: dict[str, str], path: str) -> tuple[int, Reply]:
        number, reply = super()._take(body, headers, path)
        if isinstance(reply, Done):
            # The handler sleeps `latency` before answering; release the conversation after that.
            threading.Timer(self.latency, reply.model.finished, args=(reply.conv,)).start()
        return number, reply


@dataclass
class Memory:
    """Samples the summed RSS of the stack's process groups (web, workers and their forks, Redis)."""

    stack: Stack
    peak_kb: int = 0
    peak_by_role: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        groups = {p.pid: name for name, p in self.stack.processes.items() if name not in {"slack", "openai"}}
        by_role: Counter[str] = Counter()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text()
                pgrp = int(stat.rsplit(")", 1)[1].split()[2])
                if pgrp not in groups:
                    continue
                rss = _rss_kb(proc / "status")
            except (OSError, ValueError, IndexError):
                continue
            role = groups[pgrp].split("-")[0]
            by_role[role] += rss
        total = sum(by_role.values())
        self.peak_kb = max(self.peak_kb, total)
        for role, kb in by_role.items():
            self.peak_by_role[role] = max(self.peak_by_role[role], kb)

    def stop(self) -> None:
        self._stop.set()


def _rss_kb(status: Path) -> int:
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Outcome:
    conversations: int
    workers: int
    latency: float
    seconds: float
    ideal: float
    peak_mb: float
    peak_by_role_mb: dict[str, float]
    finished: int
    problems: list[str]

    @property
    def ratio(self) -> float:
        return self.seconds / self.ideal if self.ideal else float("nan")


def run(conversations: int, channels: int, workers: int, latency: float, timeout: float) -> Outcome:
    model = Model()
    env = {"AGENTBOT_HUMAN_INPUT_MODE": "NEVER", "AGENTBOT_LOG_LEVEL": "WARNING"}
    with TrackedOpenAI(responder=model.respond, latency=latency) as llm:
        stack = Stack({}, executor="none", workers=workers, env=env, external_openai=llm.base_url)
        with stack:
            memory = Memory(stack)
            sampler = threading.Thread(target=memory.run, daemon=True)
            sampler.start()
            names = [f"C{stack.channel[1:8]}{n:02d}" for n in range(channels)]
            events = [
                (
                    names[n % channels],
                    stack.mention_event(f"[conv-{n:03d}] count to three", channel=names[n % channels]),
                )
                for n in range(conversations)
            ]
            roots = [(channel, str(event["ts"])) for channel, event in events]
            began, began_wall = time.monotonic(), time.time()
            with ThreadPoolExecutor(max_workers=min(conversations, 50)) as pool:
                statuses = list(pool.map(lambda item: stack.event(item[1], channel=item[0]), events))
            if any(status != 200 for status in statuses):
                raise SystemExit(f"mentions answered {Counter(statuses)}")
            posted = time.monotonic() - began
            done: set[int] = set()
            deadline = began + timeout
            while len(done) < conversations and time.monotonic() < deadline:
                for index, (channel, root) in enumerate(roots):
                    if index not in done and any("TERMINATE" in t for t in _texts(stack, root, channel)):
                        done.add(index)
                time.sleep(1.0)  # light polling: this process shares the CPU with the stack
            # The exact finish: when the fake Slack received the last TERMINATE post.
            finals = [
                float(c["at"])
                for c in stack.calls("chat.postMessage")
                if "TERMINATE" in str(c["args"].get("text"))
            ]
            seconds = (max(finals) - began_wall) if len(done) == conversations else time.monotonic() - began
            memory.stop()
            memory.sample()
            problems = check(stack, roots, model)
            print(f"(mentions posted in {posted:.2f} s; peak model calls in flight: {model.peak_all})")
    ideal = conversations * CALLS_PER_CONVERSATION * latency / workers
    return Outcome(
        conversations=conversations,
        workers=workers,
        latency=latency,
        seconds=seconds,
        ideal=ideal,
        peak_mb=memory.peak_kb / 1024,
        peak_by_role_mb={role: kb / 1024 for role, kb in sorted(memory.peak_by_role.items())},
        finished=len(done),
        problems=problems,
    )


def _texts(stack: Stack, root: str, channel: str) -> list[str]:
    return [str(m.get("text", "")) for m in stack.thread(root, channel=channel)]


def check(stack: Stack, roots: list[tuple[str, str]], model: Model) -> list[str]:
    """Every thread holds its own three answers in order, once; no model calls overlapped per thread."""
    problems = []
    effects: Counter[tuple[str, int]] = Counter()
    for index, (channel, root) in enumerate(roots):
        conv = f"conv-{index:03d}"
        messages = stack.thread(root, channel=channel)
        answers = [str(m.get("text", "")).removeprefix("assistant: ") for m in messages]
        answers = [a for a in answers if a.startswith("[")]
        expected = [f"[{conv}] step {k}" for k in range(1, CALLS_PER_CONVERSATION)]
        expected.append(f"[{conv}] step {CALLS_PER_CONVERSATION} TERMINATE")
        if answers != expected:
            problems.append(f"{conv}: thread shows {answers}")
        for message in messages:
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("effect_id"):
                effects[(str(payload["effect_id"]), int(payload.get("part", 0)))] += 1
        if model.peak[conv] > 1:
            problems.append(f"{conv}: {model.peak[conv]} model calls at once")
        if model.calls[conv] != CALLS_PER_CONVERSATION:
            problems.append(f"{conv}: {model.calls[conv]} model calls")
    twice = [effect for effect, count in effects.items() if count > 1]
    if twice:
        problems.append(f"posted twice: {twice[:5]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=240.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    outcome = run(args.conversations, args.channels, args.workers, args.latency, args.timeout)
    print(
        f"load: {outcome.conversations} conversations x {CALLS_PER_CONVERSATION} model calls x "
        f"{outcome.latency:g} s latency on {outcome.workers} workers"
    )
    print("| measure | value |")
    print("|---|---|")
    print(f"| finished | {outcome.finished} / {outcome.conversations} |")
    print(f"| completion time | {outcome.seconds:.1f} s |")
    print(f"| ideal (conversations x calls x latency / workers) | {outcome.ideal:.1f} s |")
    print(f"| completion / ideal | {outcome.ratio:.2f} |")
    roles = ", ".join(f"{role} {mb:.0f}" for role, mb in outcome.peak_by_role_mb.items())
    print(f"| peak RSS, web + workers + redis | {outcome.peak_mb:.0f} MB ({roles}) |")
    print(f"| problems | {len(outcome.problems)} |")
    for problem in outcome.problems[:20]:
        print(f"  - {problem}")
    return 0 if not outcome.problems and outcome.finished == outcome.conversations else 1


if __name__ == "__main__":
    sys.exit(main())
