"""The headline task as a real user's first request goes, through the Procfile processes, the real Docker
engine and the real egress proxy: the seed's code fails on a missing package, a `pip install` block
installs it from a package index through the proxy, the chart code is blocked on its data host, a person
clicks **Allow and run again**, and the chart lands in the thread. A host nobody allowed stays blocked.

The package index (PEP 503, a wheel the test builds) and the data API are servers this test starts on
this machine's address on the egress network; the wheel's code downloads its prices from the data API
over HTTP, as `yfinance` does from its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from agentbot.sandbox.egress.proxy import EgressProxy, ProxyOptions
from tests.e2e.conftest import MakeStack
from tests.e2e.harness import Stack
from tests.e2e.story import fenced, script
from tests.fakes.http import LoopbackServer
from tests.fakes.package_index import DataLog, build_wheel, data_server, package_index
from tests.sandbox.docker_fixtures import IMAGE, require_docker

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.docker, pytest.mark.timeout(240)]

TASK = "Plot a chart of NVDA and TESLA stock price change YTD."
SEED_CODE = """\
import tinyprices
import matplotlib.pyplot as plt

prices = tinyprices.download(["NVDA", "TSLA"])
"""
PIP_REPLY = "The package is missing. Install it first:\n\n```sh\npip install tinyprices\n```"
CHART_CODE = """\
# filename: ytd_change.py
import tinyprices
import matplotlib.pyplot as plt

prices = tinyprices.download(["NVDA", "TSLA"])
for ticker, series in prices.items():
    change = [(p / series[0] - 1) * 100 for p in series]
    plt.plot(change, label=ticker)
plt.title("NVDA and TESLA % change YTD")
plt.legend()
plt.show()
print("plotted change:", {t: round((s[-1] / s[0] - 1) * 100, 1) for t, s in prices.items()})
"""
OTHER_CODE = """\
import urllib.request
print(urllib.request.urlopen("{url}", timeout=5).read()[:20])
"""


def wheel_source(data_url: str) -> str:
    return f'''"""Prices from the data API, the way yfinance downloads them."""
import csv, io, urllib.request

URL = "{data_url}/prices.csv"


def download(tickers):
    with urllib.request.urlopen(URL, timeout=10) as reply:
        rows = list(csv.DictReader(io.StringIO(reply.read().decode())))
    return {{t: [float(row[t]) for row in rows] for t in tickers}}
'''


@pytest.fixture(scope="module")
def gateway() -> str:
    client: docker.DockerClient = require_docker()
    return str(EgressProxy(ProxyOptions(image=IMAGE)).gateways(client.api)[0])


@pytest.fixture(scope="module")
def data_log() -> DataLog:
    return DataLog()


@pytest.fixture(scope="module")
def data(gateway: str, data_log: DataLog) -> Iterator[LoopbackServer]:
    with data_server(data_log, host=gateway) as server:
        yield server


@pytest.fixture(scope="module")
def unallowed(gateway: str) -> Iterator[LoopbackServer]:
    with data_server(DataLog(), host=gateway) as server:
        yield server


@pytest.fixture(scope="module")
def index(gateway: str, data: LoopbackServer) -> Iterator[LoopbackServer]:
    wheel = build_wheel("tinyprices", "1.0", {"tinyprices.py": wheel_source(data.url)})
    with package_index([wheel], host=gateway) as server:
        yield server


def test_missing_package_installed_through_the_proxy_then_data_host_allowed_in_the_thread(
    make_stack: MakeStack, index: LoopbackServer, data: LoopbackServer, data_log: DataLog, gateway: str
) -> None:
    rules = [
        {"match": "plotted change", "reply": "The chart shows the % change YTD. TERMINATE"},
        {
            "match": "Successfully installed tinyprices",
            "reply": fenced("Installed. Now the chart:", CHART_CODE),
        },
        {"match": "No module named 'tinyprices'", "reply": PIP_REPLY},
        {"match": "NVDA and TESLA", "reply": fenced("Here is the code.", SEED_CODE)},
    ]
    env = {
        "AGENTBOT_SANDBOX_NETWORK": "proxy",
        "AGENTBOT_SANDBOX_INDEX_URL": f"{index.url}/simple/",
        "AGENTBOT_SANDBOX_THREAD_ALLOW": "any",  # the data API is on this machine: a private address
    }
    bot = make_stack(script(rules=rules), env=env)
    root = bot.mention(TASK, user="UANA")

    card = bot.wait_for_card(root)  # the seed's code
    assert "network: proxy" in json.dumps(card["blocks"])
    bot.click(card, "run_code", user="UANA", thread_ts=root)
    bot.wait_for_text(root, "Install it first")

    card = bot.wait_for_card(root)  # pip install, through the proxy, from the operator's index
    assert "pip install tinyprices" in json.dumps(card["blocks"])
    bot.click(card, "run_code", user="UANA", thread_ts=root)
    bot.wait_for_text(root, "Installed. Now the chart:")

    card = bot.wait_for_card(root)  # the chart code: its data host nobody allowed yet
    bot.click(card, "run_code", user="UANA", thread_ts=root)
    data_host = f"{gateway}:{data.port}"
    bot.wait_until(lambda: _hosts_card(bot, root) is not None, timeout=60, what="the blocked-hosts card")
    hosts_card = _hosts_card(bot, root)
    assert hosts_card is not None and data_host in json.dumps(hosts_card["blocks"])
    assert data_log.paths == []  # nothing reached the data API
    assert not any("plotted change" in json.dumps(r["messages"]) for r in bot.llm_requests())

    assert bot.click(hosts_card, "allow_host", user="UBOB", thread_ts=root) == 200  # not an approver
    bot.wait_until(lambda: bool(bot.calls("chat.postEphemeral")), what="UBOB's refusal")
    assert data_log.paths == []
    assert bot.click(hosts_card, "allow_host", user="UANA", thread_ts=root) == 200
    bot.wait_for_text(root, "The chart shows the % change YTD. TERMINATE")
    (chart,) = bot.uploads(root)
    assert chart["content"].startswith(b"\x89PNG")
    assert data_log.paths == ["/prices.csv"]
    assert any(data_host in text and "contacted" in text for text in _contexts(bot, root))
    bot.assert_nothing_twice(root)


def test_a_host_nobody_allowed_stays_blocked_and_the_assistant_hears_why(
    make_stack: MakeStack, unallowed: LoopbackServer, gateway: str
) -> None:
    code = OTHER_CODE.format(url=f"{unallowed.url}/prices.csv")
    rules = [
        {"match": "exitcode: 1", "reply": "The host is blocked, so I stop here. TERMINATE"},
        {"match": "fetch the file", "reply": fenced("Fetching it:", code)},
    ]
    env = {"AGENTBOT_SANDBOX_NETWORK": "proxy", "AGENTBOT_SANDBOX_THREAD_ALLOW": "any"}
    bot = make_stack(script(rules=rules), env=env)
    root = bot.mention("Please fetch the file from our data host.", user="UANA")
    bot.click(bot.wait_for_card(root), "run_code", user="UANA", thread_ts=root)
    bot.wait_until(lambda: _hosts_card(bot, root) is not None, timeout=60, what="the blocked-hosts card")
    hosts_card = _hosts_card(bot, root)
    assert hosts_card is not None
    bot.click(hosts_card, "deny_host", user="UANA", thread_ts=root)
    bot.wait_for_text(root, "The host is blocked, so I stop here. TERMINATE")
    fed_back = json.dumps(bot.llm_requests()[-1]["messages"])
    assert f"{gateway}:{unallowed.port}" in fed_back and "403" in fed_back


def _hosts_card(bot: Stack, root: str) -> dict[str, Any] | None:
    return next((card for card in bot.cards(root) if "allow_host" in json.dumps(card["blocks"])), None)


def _contexts(bot: Stack, root: str) -> list[str]:
    texts = []
    for message in bot.thread(root):
        for block in message.get("blocks") or []:
            if block.get("type") == "context":
                texts.append(json.dumps(block))
    return texts
