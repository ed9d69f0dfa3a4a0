"""Benchmark: from the model's first token to the first visible text in Slack, with the model at 50 tokens/s.

    python -m bench.streaming [--conversations 30] [--tokens-per-second 50] [--words 60]

Starts the end-to-end stack of `tests/e2e` (a private `redis-server`, the fake Slack Web API,
`agentbot web` and one `python -m worker`) with the fake OpenAI server in this process, streaming a
`--words`-word reply at `--tokens-per-second`. Then, one at a time, `--conversations` mentions, each in a
channel of its own, first with Slack streaming (`chat.startStream` / `appendStream`), then with
streaming refused, where the reply is posted and edited (`chat.postMessage` + paced `chat.update`).

For each conversation: the moment the fake model sent the first token, and the moment the fake Slack
received the first call carrying text of the reply (an `appendStream`, or an edit with text). Both
fakes run on this machine and stamp with the same clock (`time.time()`). Prints p50/p99/max of that
gap, and, side by side, the same gap to the whole reply shown (`chat.update` with the finished post):
what people waited for before streaming, when each reply was posted whole once the model had finished.
Target (issue 12): first token to first visible text p50 <= 300 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from functools import partial
from typing import Any

from tests.e2e.harness import Stack
from tests.fakes.openai_server import FakeOpenAI

TARGET_P50_MS = 300.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=30)
    parser.add_argument("--tokens-per-second", type=float, default=50.0)
    parser.add_argument("--words", type=int, default=60)
    args = parser.parse_args(argv)
    reply = " ".join(f"word{i}" for i in range(args.words)) + " TERMINATE"
    with FakeOpenAI(default=reply, tokens_per_second=args.tokens_per_second) as llm:
        stack = Stack({}, executor="none", external_openai=llm.base_url)
        with stack:
            streamed = measure(stack, llm, args.conversations)
            stack.set_streaming(False)
            edited = measure(stack, llm, args.conversations)
    seconds = args.words / args.tokens_per_second
    print(f"model: {args.words} tokens at {args.tokens_per_second:g} tokens/s ({seconds:.1f} s per reply)")
    print(f"{'figure (ms from the first token)':<56} {'n':>5} {'p50':>8} {'p99':>8} {'max':>8}")
    report("first token -> first visible text, streamed", [s[0] for s in streamed])
    report("first token -> first visible text, edits (fallback)", [s[0] for s in edited])
    report("first token -> whole reply shown (as before streaming)", [s[1] for s in streamed])
    p50 = statistics.median(s[0] for s in streamed)
    verdict = "met" if p50 <= TARGET_P50_MS else "NOT met"
    print(f"target: first visible text p50 <= {TARGET_P50_MS:g} ms: {verdict}")
    return 0


def measure(stack: Stack, llm: FakeOpenAI, conversations: int) -> list[tuple[float, float]]:
    """(first visible text, whole reply shown) in ms after the first token, per conversation."""
    samples = []
    for _ in range(conversations):
        channel = f"C{uuid.uuid4().hex[:10].upper()}"
        before = len(llm.first_token_at)
        stack.mention("say sixty words", channel=channel)
        stack.wait_until(partial(_done, stack, channel), timeout=30, what="the reply and the notice after it")
        first_token = llm.first_token_at[before]
        calls = [c for c in stack.calls() if c["args"].get("channel") == channel]
        visible = next(c["at"] for c in calls if _shows_text(c))
        whole = next(c["at"] for c in reversed(calls) if c["method"] == "chat.update" and "word" in _text(c))
        samples.append(((visible - first_token) * 1000, (whole - first_token) * 1000))
        time.sleep(0.2)  # one conversation at a time: the figure is latency, not queueing
    return samples


def _done(stack: Stack, channel: str) -> bool:
    """The notice after the reply is posted: the reply itself was finished before it."""
    posts = stack.calls("chat.postMessage")
    return any(c["args"].get("channel") == channel and "task is done" in _text(c) for c in posts)


def _shows_text(call: dict[str, Any]) -> bool:
    """A call that puts reply text on screen (not the empty stream start, nor a "…" placeholder)."""
    return call["method"] in {"chat.appendStream", "chat.update", "chat.stopStream"} and "word" in _text(call)


def _text(call: dict[str, Any]) -> str:
    args = call["args"]
    blocks = args.get("blocks") if isinstance(args.get("blocks"), list) else []
    return str(args.get("markdown_text") or "") + str(args.get("text") or "") + str(blocks)


def report(what: str, samples: list[float]) -> None:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    print(f"{what:<56} {len(samples):>5} {cuts[49]:>8.1f} {cuts[98]:>8.1f} {max(samples):>8.1f}")


if __name__ == "__main__":
    sys.exit(main())
