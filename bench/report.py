"""The product's figures in one table: runs every benchmark, prints markdown, draws a PNG chart.

    python -m bench.report [--quick] [--only NAME ...] [--out bench/out]

Runs, each in its own process with a time limit: `bench.slack_ack` (ack latency, first visible
response), `bench.streaming` (the model's first token to the first visible text, streamed and
edited), `bench.engine_overhead` (engine overhead per step), `bench.sandbox_vs_autogen` (sandbox
run-to-result, against AG2's executor), `bench.load` (100 conversations at once vs the ideal, peak
memory), and, here, the Redis bytes an idle conversation costs. A benchmark that fails or times out
shows "n/a" with the reason; the others are still reported. Writes `figures.png`, `figures.md` and
`figures.json` to `--out`. Not part of the test command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"


@dataclass
class Figure:
    """One measured figure (or "n/a" with the reason)."""

    group: str
    name: str
    value: float | None
    unit: str
    target: str = ""
    note: str = ""

    def shown(self) -> str:
        if self.value is None:
            return f"n/a ({self.note})" if self.note else "n/a"
        digits = 0 if abs(self.value) >= 100 else 2 if abs(self.value) < 10 else 1
        return f"{self.value:,.{digits}f} {self.unit}".strip()


@dataclass
class Bench:
    name: str
    command: list[str]
    timeout: float
    parse: Callable[[str], list[Figure]]
    expected: list[tuple[str, str, str]] = field(default_factory=list)  # (group, name, unit) if it fails


# ---------------------------------------------------------------- parsers of each benchmark's output


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def parse_slack_ack(out: str) -> list[Figure]:
    figures = []
    rows = {  # prefix in the output: (figure, target of p50, target of p99)
        "ack, event (app_mention)": ("ack latency, event (50 concurrent)", "", "≤ 1.5x bare Bolt"),
        "ack, event, bare Bolt": ("ack latency, bare Bolt on gunicorn (reference)", "", ""),
        "ack, button click": ("ack latency, button click (50 concurrent)", "", "< 100 ms"),
        "mention to first visible response": ("first visible response", "< 300 ms", ""),
    }
    for prefix, (name, p50_target, p99_target) in rows.items():
        found = re.search(rf"^{re.escape(prefix)}.*?\s+(\d+)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.M)
        if found is None:
            figures += [Figure("Slack", f"{name} p50", None, "ms", p50_target, "not in output")]
            continue
        figures.append(Figure("Slack", f"{name} p50", _num(found.group(2)), "ms", p50_target))
        figures.append(Figure("Slack", f"{name} p99", _num(found.group(3)), "ms", p99_target))
    return figures


def parse_engine_overhead(out: str) -> list[Figure]:
    found = re.search(rf"\| step inside the worker \| {NUMBER} \| {NUMBER} \|", out)
    if found is None:
        return [Figure("engine", "overhead per step", None, "ms", note="not in output")]
    return [
        Figure("engine", "overhead per step p50", _num(found.group(1)), "ms", "< 10 ms"),
        Figure("engine", "overhead per step p99", _num(found.group(2)), "ms", "< 50 ms"),
    ]


def parse_sandbox(out: str) -> list[Figure]:
    figures = []
    cases = (("print(1)", "print(1)"), ("matplotlib chart", "chart (plt.show)"), ("first run", "first run"))
    for label, short in cases:
        found = re.search(
            rf"^\| {re.escape(label)}[^|]*\| {NUMBER} ms \| {NUMBER} ms \| {NUMBER} ms \| {NUMBER} ms "
            rf"\| {NUMBER} \| (≤ {NUMBER}) \|",
            out,
            re.M,
        )
        if found is None:
            figures.append(Figure("sandbox", f"run-to-result {short}", None, "ms", note="not in output"))
            continue
        figures.append(Figure("sandbox", f"run-to-result {short}, agentbot", _num(found.group(3)), "ms"))
        figures.append(Figure("sandbox", f"run-to-result {short}, agentbot p99", _num(found.group(4)), "ms"))
        figures.append(Figure("sandbox", f"run-to-result {short}, AG2", _num(found.group(1)), "ms"))
        ratio = _num(found.group(5))
        figures.append(Figure("sandbox", f"{short}: agentbot / AG2", ratio, "x", found.group(6)))
    return figures


def parse_load(out: str) -> list[Figure]:
    def cell(label: str) -> str | None:
        found = re.search(rf"^\| {re.escape(label)} \| ([^|]+) \|", out, re.M)
        return found.group(1).strip() if found else None

    header = re.search(r"load: (\d+) conversations x (\d+) model calls x ([0-9.]+) s latency on (\d+)", out)
    setup = (
        f"{header.group(1)} conv. x {header.group(2)} calls x {header.group(3)} s / {header.group(4)} workers"
        if header
        else ""
    )
    completion, ideal, ratio = (
        cell("completion time"),
        cell("ideal (conversations x calls x latency / workers)"),
        cell("completion / ideal"),
    )
    memory, finished, problems = cell("peak RSS, web + workers + redis"), cell("finished"), cell("problems")
    note = f"finished {finished}, problems {problems}" if finished else ""
    roles = (memory or "").partition(" MB")[2].strip(" ()")
    figures = [
        Figure("load", "completion time", _first_number(completion), "s", note=setup),
        Figure("load", "ideal completion time", _first_number(ideal), "s", note=setup),
        Figure("load", "completion / ideal", _first_number(ratio), "x", note=note),
        Figure("load", "peak RSS (web + workers + Redis)", _first_number(memory), "MB", note=roles),
    ]
    if problems not in (None, "0"):
        for figure in figures:
            figure.note = f"CHECKS FAILED: {problems} problem(s); {figure.note}"
    return figures


def parse_streaming(out: str) -> list[Figure]:
    figures = []
    rows = {  # prefix in the output: (figure, target)
        "first token -> first visible text, streamed": (
            "first token to first visible text, streamed",
            "p50 ≤ 300 ms",
        ),
        "first token -> first visible text, edits": (
            "first token to first visible text, edits (fallback)",
            "",
        ),
        "first token -> whole reply shown": ("first token to whole reply (as before streaming)", ""),
    }
    note = "model at 50 tokens/s, 60-token replies"
    for prefix, (name, target) in rows.items():
        found = re.search(rf"^{re.escape(prefix)}.*?\s+(\d+)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.M)
        for label, group in (("p50", 2), ("p99", 3)):
            value = _num(found.group(group)) if found else None
            figures.append(
                Figure("Slack", f"{name} {label}", value, "ms", target, note if found else "not in output")
            )
    return figures


def _first_number(text: str | None) -> float | None:
    found = re.search(NUMBER, text or "")
    return _num(found.group(1)) if found else None


BENCHES = {
    "slack_ack": lambda quick: Bench(
        "slack_ack",
        [sys.executable, "-m", "bench.slack_ack", "--requests", "200" if quick else "500"],
        240,
        parse_slack_ack,
        [("Slack", "ack latency p99", "ms"), ("Slack", "first visible response p50", "ms")],
    ),
    "streaming": lambda quick: Bench(
        "streaming",
        [sys.executable, "-m", "bench.streaming", "--conversations", "10" if quick else "30"],
        300,
        parse_streaming,
        [("Slack", "first token to first visible text, streamed p50", "ms")],
    ),
    "engine_overhead": lambda quick: Bench(
        "engine_overhead",
        [sys.executable, "-m", "bench.engine_overhead", "--conversations", "30" if quick else "100"],
        240,
        parse_engine_overhead,
        [("engine", "overhead per step", "ms")],
    ),
    "sandbox_vs_autogen": lambda quick: Bench(
        "sandbox_vs_autogen",
        [sys.executable, "-m", "bench.sandbox_vs_autogen", "--runs", "5" if quick else "20"],
        420,
        parse_sandbox,
        [("sandbox", "run-to-result", "ms")],
    ),
    "load": lambda quick: Bench(
        "load",
        [sys.executable, "-m", "bench.load", *(["--conversations", "40"] if quick else [])],
        330,
        parse_load,
        [("load", "completion / ideal", "x")],
    ),
}


def run_bench(bench: Bench, log_dir: Path) -> list[Figure]:
    """Run one benchmark in its own process; its figures, or "n/a" figures with the reason."""
    began = time.monotonic()
    print(f"running {bench.name} …", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            bench.command, cwd=ROOT, capture_output=True, text=True, timeout=bench.timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = _text(exc.stdout) + _text(exc.stderr)
        (log_dir / f"{bench.name}.log").write_text(out)
        return _failed(bench, f"timed out after {bench.timeout:g} s")
    out = done.stdout + "\n" + done.stderr
    (log_dir / f"{bench.name}.log").write_text(out)
    print(f"  {bench.name}: {time.monotonic() - began:.0f} s, exit {done.returncode}", file=sys.stderr)
    figures = bench.parse(done.stdout)
    if done.returncode != 0 and all(f.value is None for f in figures):
        return _failed(bench, _reason(out, done.returncode))
    if done.returncode != 0:
        for figure in figures:
            figure.note = f"exit {done.returncode}; {figure.note}".strip("; ")
    return figures


def _text(value: str | bytes | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def _failed(bench: Bench, reason: str) -> list[Figure]:
    return [Figure(group, name, None, unit, note=reason) for group, name, unit in bench.expected]


def _reason(out: str, code: int) -> str:
    lines = [line.strip() for line in out.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit {code}"
    return last[:120].replace("|", "/")


# ---------------------------------------------------------------- Redis bytes per idle conversation


def redis_bytes_per_idle_conversation(conversations: int = 200) -> list[Figure]:
    """Conversations brought to their idle state (an approval card waiting for a person) on a private
    Redis by the real engine and store; memory of their keys (`MEMORY USAGE`) per conversation, and
    the growth of Redis' `used_memory` including rq's bookkeeping that expires later."""
    import redis
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer

    from agentbot import runtime
    from agentbot.conversation.driver import submit
    from agentbot.conversation.events import Start
    from agentbot.conversation.state import ConversationKey
    from agentbot.settings import load_settings
    from bench.engine_overhead import NullPlatform
    from tests.e2e.story import PRICE_REPLY, TASK

    class StoryLLM:
        def complete(self, messages: Sequence[object], *, model: str | None = None) -> object:
            from agentbot.conversation.llm import Completion

            return Completion(content=PRICE_REPLY, model="story", prompt_tokens=300, completion_tokens=250)

    binary = shutil.which("redis-server")
    if binary is None:
        return [Figure("state", "Redis bytes per idle conversation", None, "B", note="no redis-server")]
    workdir = tempfile.mkdtemp(prefix="agentbot-bench-redis-")
    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        _wait(lambda: _pings(client))
        settings = load_settings(redis_url=f"redis://127.0.0.1:{port}/0", executor="none")
        rt = runtime.Runtime(
            settings=settings,
            redis=client,
            platform=NullPlatform(),
            embedded=False,
            llm_override=StoryLLM(),  # type: ignore[arg-type]
        )
        runtime.install(rt)
        before = int(client.info("memory")["used_memory"])
        keys_of = [
            ConversationKey(team_id="T0001", channel_id=f"C{n % 10:08d}", thread_ts=f"17000{n:05d}.000100")
            for n in range(conversations)
        ]
        for n, key in enumerate(keys_of):
            start = Start(event_id=f"Ev{n:08d}", user_id="U0001", user_name="ana", text=TASK)
            submit(rt.store, rt.queue, key, start)
        SimpleWorker([rt.queue.queue], connection=client, serializer=JSONSerializer).work(
            burst=True, logging_level="WARNING"
        )
        after = int(client.info("memory")["used_memory"])
        keys = list(client.scan_iter(match="agentbot:*", count=1000))
        usage = sum(int(client.memory_usage(k) or 0) for k in keys)
        states = [rt.store.load(key) for key in keys_of]
        phases = {state.phase.value if state else "missing" for state in states}
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    note = f"{conversations} conversations, phase {'/'.join(sorted(phases))}, {len(keys)} keys"
    return [
        Figure(
            "state", "Redis bytes per idle conversation (its keys)", usage / conversations, "B", note=note
        ),
        Figure(
            "state",
            "Redis used_memory growth per conversation (incl. rq job data, expiring)",
            (after - before) / conversations,
            "B",
        ),
    ]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pings(client: object) -> bool:
    import redis

    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except redis.RedisError:
        return False


def _wait(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("redis-server did not start")
        time.sleep(0.02)


# ---------------------------------------------------------------- output


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    docker = _version(["docker", "version", "--format", "{{.Server.Version}}"])
    redis_version = _version(["redis-server", "--version"])
    found = re.search(r"v=([0-9.]+)", redis_version)
    return (
        f"{os.cpu_count()} CPUs ({cpu or platform.processor() or 'unknown'}){memory}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"Redis {found.group(1) if found else 'n/a'}, Docker engine {docker or 'n/a'}"
    )


def _version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def table(figures: list[Figure]) -> str:
    lines = ["| area | figure | value | target | note |", "|---|---|---:|---|---|"]
    for f in figures:
        note = f.note if f.value is not None else ""
        lines.append(f"| {f.group} | {f.name} | {f.shown()} | {f.target} | {note} |")
    return "\n".join(lines)


def chart(figures: list[Figure], path: Path) -> str:
    """A PNG with one panel per unit (ms, s, x, MB, B); returns "" or why no chart was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: {exc}"
    measured = [f for f in figures if f.value is not None]
    units = list(dict.fromkeys(f.unit for f in measured))
    if not units:
        return "no chart: nothing was measured"
    heights = [max(1.2, 0.45 * sum(f.unit == u for f in measured) + 0.8) for u in units]
    fig, axes = plt.subplots(
        len(units), 1, figsize=(10, sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    axes_list = [axes] if len(units) == 1 else list(axes)
    for ax, unit in zip(axes_list, units, strict=True):
        rows = [f for f in measured if f.unit == unit]
        labels = [f"{f.group}: {f.name}" for f in rows]
        values = [float(f.value or 0) for f in rows]
        bars = ax.barh(labels, values, color="#4C72B0")
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        ax.bar_label(bars, labels=[f.shown() for f in rows], padding=3, fontsize=8)
        ax.set_xlim(0, max(values) * 1.3 if max(values) > 0 else 1)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("agentbot figures (python -m bench.report)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, ~2 min)")
    parser.add_argument("--only", nargs="*", choices=[*BENCHES, "redis_idle"], help="run only these")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    chosen = args.only or [*BENCHES, "redis_idle"]
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    figures: list[Figure] = []
    for name in chosen:
        if name == "redis_idle":
            try:
                figures += redis_bytes_per_idle_conversation(50 if args.quick else 200)
            except Exception as exc:  # a failing benchmark is shown as n/a, never stops the report
                figures.append(
                    Figure(
                        "state",
                        "Redis bytes per idle conversation",
                        None,
                        "B",
                        note=f"{type(exc).__name__}: {exc}",
                    )
                )
            continue
        figures += run_bench(BENCHES[name](args.quick), args.out)
    about = machine()
    markdown = f"Measured {time.strftime('%Y-%m-%d')} on {about}.\n\n{table(figures)}\n"
    print(markdown)
    (args.out / "figures.md").write_text(markdown)
    (args.out / "figures.json").write_text(
        json.dumps({"machine": about, "figures": [asdict(f) for f in figures]}, indent=2)
    )
    problem = chart(figures, args.out / "figures.png")
    print(problem or f"chart: {args.out / 'figures.png'}")
    print(f"(all benchmarks: {time.monotonic() - began:.0f} s; logs in {args.out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
