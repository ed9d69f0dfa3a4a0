"""Benchmark: how fast the `web` process acknowledges Slack, side by side with a bare Bolt app.

    python -m bench.slack_ack [--requests 500] [--concurrency 50] [--burst 200] [--mentions 50]
                              [--web-concurrency N]

Starts, as separate processes on loopback, a private `redis-server`, the fake Slack Web API, the
reference (`bench.bare_bolt`: a Bolt app whose listeners only ack, on `gunicorn -w 2 -k gthread
--threads 25`) and `agentbot web` in its default configuration (HTTP mode with Redis). Then POSTs the
same signed requests to both from `--concurrency` client threads, in alternating rounds: Events API
mentions, then (agentbot only) Run button clicks, then `--burst` concurrent mentions at once (every ack
must beat Slack's 3 s). Prints p50/p99 of the time to the HTTP answer (the ack), the agentbot / bare
ratio, and, for `--mentions` mentions sent one at a time, the time from the POST to the fake Slack
receiving the first visible call (`assistant.threads.setStatus` or `reactions.add`). That status is
the step's (the web only stores the event and its step), so for that last round the queue is emptied
and one `agentbot worker` starts (executor `none`, a fake model server): the figure is ack + queue +
step start, as people see it.
Also prints the web processes' CPU time per request and the machine's load: on a small machine the
load generator, the fake Slack and Redis share the CPUs with the server, so at 50 requests in flight
the ack latency is mostly waiting for a CPU, and noise from anything else running shows.
Targets (issue 14): agentbot's ack p99 <= 1.5x the bare app's; at 200 concurrent every ack < 3 s.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-secret"
TOKEN = "xoxb-test-token"
TEAM = "T0001"
BOT = "UBOT"
VISIBLE = ("assistant.threads.setStatus", "reactions.add")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200, help="concurrent mentions in the burst round")
    parser.add_argument("--mentions", type=int, default=50)
    parser.add_argument("--web-concurrency", type=int, help="WEB_CONCURRENCY of agentbot web")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    web_env = {} if args.web_concurrency is None else {"WEB_CONCURRENCY": str(args.web_concurrency)}
    half = args.requests // 2  # two alternating rounds each, so a noisy moment hits both servers
    with (
        redis_server() as redis_url,
        fake_slack() as slack_url,
        bare_bolt(slack_url) as (bare_url, bare_pid),
        web(redis_url, slack_url, web_env) as (web_url, pid),
    ):
        for url in (bare_url, web_url):
            load(url, [mention_request() for _ in range(50)], args.concurrency)  # warm-up
        bare: Measured = ([], 0.0)
        ours: Measured = ([], 0.0)
        for _ in range(2):
            bare = measured(
                bare, bare_url, bare_pid, [mention_request() for _ in range(half)], args.concurrency
            )
            ours = measured(ours, web_url, pid, [mention_request() for _ in range(half)], args.concurrency)
        clicks = measured(
            ([], 0.0), web_url, pid, [click_request() for _ in range(args.requests)], args.concurrency
        )
        burst = load(web_url, [mention_request() for _ in range(args.burst)], args.burst)
        visible = []
        if args.mentions:
            empty_queue(redis_url)  # the steps of the rounds above: not this round's work
            with fake_model() as model_url, worker(redis_url, slack_url, model_url):
                first_visible(web_url, slack_url, 3)  # warm-up: the worker's first steps load lazily
                visible = first_visible(web_url, slack_url, args.mentions)
    print(f"{'what':<52} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu ms':>7}")
    report(f"ack, event, bare Bolt on gunicorn, {args.concurrency} concurrent", *bare)
    report(f"ack, event (app_mention), {args.concurrency} concurrent", *ours)
    report(f"ack, button click (run_code), {args.concurrency} concurrent", *clicks)
    report(f"ack, event, burst of {args.burst} concurrent", burst)
    if visible:
        report("mention to first visible response", visible)
    ratio = _p(ours[0], 50) / _p(bare[0], 50), _p(ours[0], 99) / _p(bare[0], 99)
    print(f"agentbot / bare Bolt: p50 {ratio[0]:.2f}x, p99 {ratio[1]:.2f}x (target p99 <= 1.5x)")
    slow = sum(sample >= 3000 for sample in burst)
    print(f"burst of {args.burst}: slowest ack {max(burst):.0f} ms; {slow} of {len(burst)} at or over 3 s")
    print("cpu ms: CPU time of the server (all its processes) per request, where /proc tells")
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after (the load generator and fake Slack run here too)"
    )
    return 0


Measured = tuple[list[float], float]  # latencies in ms, CPU seconds the server spent on them


def measured(
    so_far: Measured, url: str, pid: int, requests: list[tuple[bytes, str]], concurrency: int
) -> Measured:
    """`so_far` plus one round of `requests` against `url` (its server's CPU time counted by `pid`)."""
    before = cpu_seconds(pid)
    samples = load(url, requests, concurrency)
    return so_far[0] + samples, so_far[1] + cpu_seconds(pid) - before


def _p(samples: list[float], percent: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[percent - 1]


def report(what: str, samples: list[float], cpu: float | None = None) -> None:
    """One row: n, p50, p99, max, and CPU ms per request."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    per_request = "" if cpu is None or cpu < 0 else f"{cpu * 1000 / len(samples):>7.2f}"
    quantiles = f"{cuts[49]:>8.1f} {cuts[98]:>8.1f} {max(samples):>8.1f}"
    print(f"{what:<52} {len(samples):>5} {quantiles} {per_request}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid` and its live child processes; -1 without Linux's /proc."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, pending = 0, [pid]
    try:
        while pending:
            current = pending.pop()
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat.rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
    except (OSError, ValueError):
        return -1.0
    return total / ticks


# -- requests as Slack sends them ------------------------------------------------------------------


def sign(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def mention_request(ts: str | None = None) -> tuple[bytes, str]:
    ts = ts or f"{time.time():.6f}"
    body = {
        "token": "legacy", "team_id": TEAM, "api_app_id": "A0001", "type": "event_callback",
        "event": {"type": "app_mention", "user": "UANA", "text": f"<@{BOT}> plot sin(x)", "ts": ts,
                  "channel": "C0001", "event_ts": ts},
        "event_id": f"Ev{uuid.uuid4().hex[:12]}", "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT, "is_bot": True}],
    }  # fmt: skip
    return json.dumps(body).encode(), "application/json"


def click_request() -> tuple[bytes, str]:
    thread = f"{time.time():.6f}"
    payload = {
        "type": "block_actions", "team": {"id": TEAM}, "user": {"id": "UANA", "team_id": TEAM},
        "trigger_id": uuid.uuid4().hex, "channel": {"id": "C0001"},
        "container": {"type": "message", "message_ts": thread, "channel_id": "C0001", "thread_ts": thread},
        "message": {"type": "message", "ts": thread, "thread_ts": thread, "bot_id": "BBOT", "text": ""},
        "actions": [{"action_id": "run_code", "type": "button", "action_ts": thread,
                     "value": json.dumps({"run_id": "r1", "code_hash": "h"})}],
    }  # fmt: skip
    return urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"


def send(url: str, request: tuple[bytes, str]) -> float:
    """POST one signed request on a fresh connection; milliseconds until the full answer."""
    body, content_type = request
    host, port = url.removeprefix("http://").split(":")
    headers = {"Content-Type": content_type, **sign(body)}
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/slack/events", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")
    return elapsed


def load(url: str, requests: list[tuple[bytes, str]], concurrency: int) -> list[float]:
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda r: send(url, r), requests))


def first_visible(web_url: str, slack_url: str, count: int) -> list[float]:
    """Mentions one at a time: POST start to the fake Slack's first visible call for that thread.

    The next mention waits for this one's answer, so each meets an idle worker.
    """
    samples = []
    for _ in range(count):
        ts = f"{time.time():.6f}"
        started = time.time()
        send(web_url, mention_request(ts))
        seen = wait_for_call(slack_url, ts, VISIBLE)
        samples.append((seen - started) * 1000)
        wait_for_call(slack_url, ts, ("chat.postMessage",))
    return samples


def wait_for_call(slack_url: str, thread_ts: str, methods: tuple[str, ...], timeout: float = 10.0) -> float:
    """When the fake Slack got the first call of `methods` for the thread (or a reaction on it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(slack_url.replace("/api/", "/_calls"), timeout=5) as response:
            calls: list[dict[str, Any]] = json.loads(response.read())
        for call in calls:
            args = call["args"]
            if call["method"] in methods and thread_ts in (args.get("thread_ts"), args.get("timestamp")):
                return float(call["at"])
        time.sleep(0.005)
    raise TimeoutError(f"no {' or '.join(methods)} for {thread_ts}")


# -- the processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is needed (or set REDIS_URL)")
    port, workdir = free_port(), tempfile.mkdtemp(prefix="bench-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir]
    with subprocess.Popen(args, stdout=subprocess.DEVNULL) as proc:
        try:
            url = f"redis://127.0.0.1:{port}/0"
            wait_until(lambda: _connects(port))
            yield url
        finally:
            proc.terminate()
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def fake_slack() -> Iterator[str]:
    command = [sys.executable, "-m", "tests.fakes.slack_server", "--port", "0"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("READY "):
                raise RuntimeError(f"fake Slack did not start: {line!r}")
            yield line.removeprefix("READY ")
        finally:
            proc.terminate()


@contextlib.contextmanager
def bare_bolt(slack_url: str) -> Iterator[tuple[str, int]]:
    """The reference: `bench.bare_bolt` on gunicorn, 2 gthread workers with 25 threads each."""
    import gunicorn.config

    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "25"]
    command += ["-b", f"127.0.0.1:{port}", "--log-level", "warning", "bench.bare_bolt:api"]
    if any(setting.name == "control_socket_disable" for setting in gunicorn.config.KNOWN_SETTINGS):  # >= 25.1
        command.insert(-1, "--no-control-socket")
    env = {**os.environ, "BENCH_SLACK_API_URL": slack_url, "BENCH_SIGNING_SECRET": SECRET}
    with subprocess.Popen(command, cwd=ROOT, env=env) as proc:
        try:
            wait_until(lambda: _connects(port))
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            proc.terminate()


def agentbot_env(redis_url: str, slack_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ, "REDIS_URL": redis_url, "SLACK_API_URL": slack_url, "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": "", "AGENTBOT_EXECUTOR": "none",
        "OPENAI_API_KEY": "unused", "AGENTBOT_LOG_LEVEL": "WARNING", **extra,
    }  # fmt: skip


@contextlib.contextmanager
def web(redis_url: str, slack_url: str, extra_env: dict[str, str]) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = agentbot_env(redis_url, slack_url, PORT=str(port), **extra_env)
    with subprocess.Popen([sys.executable, "-m", "agentbot", "web"], cwd=ROOT, env=env) as proc:
        try:
            wait_until(lambda: _healthy(port))
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            proc.terminate()


@contextlib.contextmanager
def fake_model() -> Iterator[str]:
    """The scripted fake OpenAI server: every request gets the same short answer at once."""
    script = Path(tempfile.mkdtemp(prefix="bench-model-")) / "script.json"
    script.write_text(json.dumps({"default": "Done. TERMINATE"}))
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--script", str(script)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.startswith("READY "):
                raise RuntimeError(f"fake model server did not start: {line!r}")
            yield line.removeprefix("READY ")
        finally:
            proc.terminate()
            shutil.rmtree(script.parent, ignore_errors=True)


@contextlib.contextmanager
def worker(redis_url: str, slack_url: str, model_url: str) -> Iterator[None]:
    """One `agentbot worker`, registered and taking steps."""
    import redis
    from rq import Worker

    env = agentbot_env(redis_url, slack_url, OPENAI_BASE_URL=model_url)
    with subprocess.Popen([sys.executable, "-m", "agentbot", "worker"], cwd=ROOT, env=env) as proc:
        try:
            with redis.Redis.from_url(redis_url) as client:
                wait_until(lambda: any(w.pid == proc.pid for w in Worker.all(connection=client)))
            yield
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def empty_queue(redis_url: str) -> None:
    import redis
    from rq import Queue

    with redis.Redis.from_url(redis_url) as client:
        Queue("agentbot", connection=client).empty()  # type: ignore[no-untyped-call]  # rq: no hints


def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("service did not start")
        time.sleep(0.05)


def _connects(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main())
