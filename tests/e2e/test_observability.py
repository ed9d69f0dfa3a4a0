"""Metrics and logs of the Procfile processes after a story: `/metrics` on web and the worker's port,
and JSON log lines that parse and carry the conversation's key.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.e2e.conftest import MakeStack
from tests.e2e.harness import Stack
from tests.e2e.story import TASK, script

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample at `url` (Prometheus text), by name and labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def json_lines(bot: Stack, process: str) -> list[dict[str, Any]]:
    """Every line the process logged, each parsed as JSON (a line that is not JSON fails the test)."""
    text = bot.processes[process].log.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_metrics_and_json_logs_after_the_story(make_stack: MakeStack) -> None:
    metrics_port = free_port()
    env = {"AGENTBOT_LOG_FORMAT": "json", "AGENTBOT_METRICS_PORT": str(metrics_port)}
    bot = make_stack(script(), env=env)
    root = bot.mention(TASK, user="UANA")
    card = bot.wait_for_card(root)
    assert bot.click(card, "run_code", user="UANA", thread_ts=root) == 200
    bot.wait_for_text(root, "prices YTD (sample data). TERMINATE")
    bot.wait_until(lambda: bot.settled(root), timeout=30, what="the conversation to settle")

    web = scrape(f"{bot.web_url}/metrics")  # gunicorn's processes, in one view
    assert value(web, "agentbot_events_total", type="start") == 1
    assert value(web, "agentbot_events_total", type="approve") == 1
    assert value(web, "agentbot_ack_seconds_count") >= 2
    assert value(web, "agentbot_ack_seconds_bucket", le="3.0") == value(web, "agentbot_ack_seconds_count")

    worker = scrape(f"http://127.0.0.1:{metrics_port}/metrics")  # the work horses' steps, in one view
    assert value(worker, "agentbot_steps_total", outcome="ok") >= 3  # model, run, model (at least)
    assert value(worker, "agentbot_step_seconds_count", outcome="ok") == value(
        worker, "agentbot_steps_total", outcome="ok"
    )
    assert value(worker, "agentbot_llm_calls_total", outcome="ok") == 2
    assert value(worker, "agentbot_llm_seconds_count") == 2
    assert value(worker, "agentbot_llm_tokens_total", model="gpt-4o-mini", kind="prompt") > 0
    assert value(worker, "agentbot_llm_tokens_total", model="gpt-4o-mini", kind="completion") > 0
    assert value(worker, "agentbot_llm_cost_usd_total", model="gpt-4o-mini") > 0
    assert value(worker, "agentbot_approvals_total", decision="approved") == 1
    assert value(worker, "agentbot_runs_total", outcome="succeeded") == 1
    assert value(worker, "agentbot_run_seconds_count") == 1
    assert value(worker, "agentbot_blocked_hosts_total") == 0  # network `none`: no proxy, no audit

    key = bot.key(root).id
    for process in ("web", "worker-1"):
        lines = json_lines(bot, process)
        assert {"time", "level", "logger", "message", "process"} <= set(lines[0])
        about = [line for line in lines if key in line["message"]]
        assert about, f"{process} logged nothing about {key}"
        assert all(line.get("conversation") == key for line in about), about
    assert any(line["logger"].startswith("gunicorn") for line in json_lines(bot, "web"))
