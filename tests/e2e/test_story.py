"""AutoGen's getting-started story, in Slack, through the processes a user starts (see `harness`).

A mention asks for the NVDA/TESLA chart; the assistant proposes code; the requester clicks Run; the
output and the PNG land in the thread; the assistant says TERMINATE; a human replies "No, please plot
% change!"; the revised code is approved and its new chart lands in the same thread. Then a CSV
shared in a thread is downloaded with the bot token, placed in the workspace and used by the code.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import MakeStack
from tests.e2e.harness import button_value
from tests.e2e.story import CSV_CONTENT, CSV_NAME, CSV_TASK, FEEDBACK, TASK, UNSCRIPTED, script

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]

OK = ":white_check_mark: exitcode: 0 (execution succeeded)"


@pytest.mark.parametrize("executor", ["docker", "local"])
def test_nvda_tesla_story_from_mention_to_percent_change_chart(make_stack: MakeStack, executor: str) -> None:
    bot = make_stack(script(), executor=executor)
    root = bot.mention(TASK, user="UANA")

    card = bot.wait_for_card(root)
    first_code = json.dumps(card["blocks"])
    assert "plt.show()" in first_code and "sample data" in first_code
    assert bot.texts(root)[0].startswith("assistant: Here is the code.")
    assert bot.click(card, "run_code", user="UANA", thread_ts=root) == 200

    bot.wait_for_text(root, "prices YTD (sample data). TERMINATE")
    assert OK in bot.texts(root)
    result = next(m for m in bot.thread(root) if m.get("text") == OK)
    assert "plotted prices: NVDA" in json.dumps(result["blocks"])
    (chart,) = bot.uploads(root)
    assert chart["filename"].endswith(".png") and chart["content"].startswith(b"\x89PNG")
    assert bot.cards(root) == []  # the decided card shows who approved, without buttons

    bot.reply(root, FEEDBACK, user="UBOB")
    card = bot.wait_for_card(root)
    assert "% change" in json.dumps(card["blocks"])
    assert button_value(card)["run_id"] != ""
    assert bot.click(card, "run_code", user="UANA", thread_ts=root) == 200

    bot.wait_for_text(root, "% change YTD of NVDA and TESLA")
    charts = bot.uploads(root)
    assert len(charts) == 2 and all(c["content"].startswith(b"\x89PNG") for c in charts)
    assert charts[0]["content"] != charts[1]["content"]
    completes = bot.calls("files.completeUploadExternal")
    assert {(c["args"]["channel_id"], c["args"]["thread_ts"]) for c in completes} == {(bot.channel, root)}
    texts = bot.texts(root)
    assert texts.count(OK) == 2
    assert not any(UNSCRIPTED in t for t in texts)
    bot.assert_nothing_twice(root)

    # The model saw the story as AutoGen would show it: the task, the run result, the feedback.
    last = bot.llm_requests()[-1]["messages"]
    sent = json.dumps(last)
    assert TASK in sent and FEEDBACK in sent and "exitcode: 0 (execution succeeded)" in sent
    assert len(bot.llm_requests()) == 4  # code, TERMINATE, revised code, TERMINATE: nothing twice


def test_csv_shared_in_the_thread_is_used_by_the_code(make_stack: MakeStack) -> None:
    bot = make_stack(script())
    root = bot.mention(CSV_TASK, user="UANA")
    bot.wait_for_text(root, "share the CSV file")
    url = bot.add_file("F0CSV1", CSV_CONTENT)
    shared = {
        "id": "F0CSV1", "name": CSV_NAME, "title": CSV_NAME, "mimetype": "text/csv", "filetype": "csv",
        "size": len(CSV_CONTENT), "mode": "hosted", "url_private": url, "url_private_download": url,
    }  # fmt: skip
    bot.reply(root, "Here it is.", user="UANA", files=[shared])

    card = bot.wait_for_card(root)
    assert "sales.csv" in json.dumps(card["blocks"])
    note = json.dumps(bot.llm_requests()[-1]["messages"])
    assert "Files shared in the thread are in the working directory: sales.csv" in note
    bot.click(card, "run_code", user="UANA", thread_ts=root)

    bot.wait_for_text(root, "April was the best. TERMINATE")
    result = next(m for m in bot.thread(root) if m.get("text") == OK)
    assert "total revenue: 5150 over 4 months; best 2024-04" in json.dumps(result["blocks"])
    (chart,) = bot.uploads(root)
    assert chart["filename"] == "revenue.png" and chart["content"].startswith(b"\x89PNG")
    bot.assert_nothing_twice(root)
