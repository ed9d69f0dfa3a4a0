"""Approving from Slack beyond Run: Edit before run, Run all in this thread, and the Home tab.

Through the Procfile's processes (see `harness`): the Edit button opens a modal (`views.open`), its
submission (a signed `view_submission`) runs the edited code, and the model reads the diff; Run all
runs the next proposal without a card until someone replies `manual`; an approver opens the Home
tab (`app_home_opened` → `views.publish`), sees the run waiting for them and runs it from there.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import MakeStack
from tests.e2e.harness import Stack
from tests.e2e.story import PRICE_CODE, TASK, UNSCRIPTED, fenced, script

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(180)]

OK = ":white_check_mark: exitcode: 0 (execution succeeded)"
EDITED_LINE = 'print("checked by a person")'
FIRST = fenced("First, the numbers.", "print('first run: 6 x 7 =', 6 * 7)\n")
SECOND = fenced("Now the chart data.", "print('second run: squares', [n * n for n in range(4)])\n")
THIRD = fenced("Once more, as asked.", "print('third run')\n")


def results(bot: Stack, root: str) -> list[dict[str, object]]:
    return [m for m in bot.thread(root) if str(m.get("text", "")).startswith(":white_check_mark: exitcode")]


def test_edit_opens_a_modal_and_its_submission_runs_the_edited_code_and_tells_the_model(
    make_stack: MakeStack,
) -> None:
    bot = make_stack(script())
    root = bot.mention(TASK, user="UANA")
    card = bot.wait_for_card(root)
    assert bot.click(card, "edit_code", user="UANA", thread_ts=root) == 200

    bot.wait_until(lambda: len(bot.opened_views()) == 1, timeout=20, what="the Edit modal")
    (modal,) = bot.opened_views()
    (field,) = [b for b in modal["blocks"] if b.get("block_id") == "code"]
    assert modal["callback_id"] == "edit_code" and field["element"]["action_id"] == "code"
    proposed = field["element"]["initial_value"]
    assert proposed.rstrip() == PRICE_CODE.rstrip()

    edited = proposed.rstrip() + f"\n{EDITED_LINE}\n"
    assert bot.submit_view(modal, {"code": edited}, user="UANA") == 200

    bot.wait_for_text(root, "prices YTD (sample data). TERMINATE")
    (result,) = results(bot, root)
    assert "checked by a person" in json.dumps(result["blocks"])
    assert any("edited the code" in t for t in bot.texts(root))
    assert bot.cards(root) == []  # the card shows who edited it, without buttons
    # The model read the edit as the person's reply: a unified diff, then the edited code's result.
    last = bot.llm_requests()[-1]["messages"]
    said = [m["content"] for m in last if m["role"] == "user"]
    assert any("I edited your code" in text and f"+{EDITED_LINE}" in text for text in said)
    assert "checked by a person" in said[-1]
    bot.assert_nothing_twice(root)


def test_a_strangers_edit_submission_runs_nothing(make_stack: MakeStack) -> None:
    bot = make_stack(script())
    root = bot.mention(TASK, user="UANA")
    card = bot.wait_for_card(root)
    bot.click(card, "edit_code", user="UANA", thread_ts=root)
    bot.wait_until(lambda: len(bot.opened_views()) == 1, timeout=20, what="the Edit modal")
    (modal,) = bot.opened_views()
    assert bot.submit_view(modal, {"code": "print('not yours')\n"}, user="UEVE") == 200
    bot.wait_until(lambda: bool(bot.calls("chat.postEphemeral")), timeout=20, what="the refusal")
    assert bot.calls("chat.postEphemeral")[-1]["args"]["user"] == "UEVE"
    assert len(bot.cards(root)) == 1 and results(bot, root) == []


def test_run_all_runs_later_proposals_without_a_card_until_someone_says_manual(make_stack: MakeStack) -> None:
    rules = [{"match": "once more", "reply": THIRD}, {"match": "third run", "reply": "Third done. TERMINATE"}]
    bot = make_stack(script(FIRST, SECOND, "Both runs are done. TERMINATE", rules=rules))
    root = bot.mention("Compute two things for me, one after the other.", user="UANA")
    card = bot.wait_for_card(root)
    assert bot.click(card, "run_all", user="UANA", thread_ts=root) == 200

    bot.wait_for_text(root, "Both runs are done. TERMINATE")
    first, second = results(bot, root)
    assert "first run: 6 x 7 = 42" in json.dumps(first["blocks"])
    assert "second run: squares [0, 1, 4, 9]" in json.dumps(second["blocks"])
    assert "Run all* is on" in json.dumps(second["blocks"])
    assert "Run all* is on" not in json.dumps(first["blocks"])
    assert any("Run all is on" in t for t in bot.texts(root))
    proposals = [t for t in bot.texts(root) if "proposed code run" in t or "wants to run code" in t]
    assert len(proposals) == 1  # the second proposal ran without a card

    bot.reply(root, "manual", user="UBOB")
    bot.wait_for_text(root, "needs approval again")
    bot.reply(root, "Please do it once more.", user="UANA")
    card = bot.wait_for_card(root)  # Run all is off: the third proposal asks again
    assert "third run" in json.dumps(card["blocks"])
    assert not any(UNSCRIPTED in t for t in bot.texts(root))
    bot.assert_nothing_twice(root)


def test_home_lists_a_run_waiting_for_the_approver_who_runs_it_from_there(make_stack: MakeStack) -> None:
    bot = make_stack(script(), env={"AGENTBOT_APPROVERS": "UBOSS"})
    root = bot.mention(TASK, user="UANA")
    bot.wait_for_card(root)

    assert bot.open_home("UBOSS") == 200
    home = bot.wait_for_home("UBOSS", "Code to run")
    shown = json.dumps(home["blocks"])
    assert f"<#{bot.channel}>" in shown and "stock_prices.py" in shown and "NVDA and TESLA" in shown
    assert bot.open_home("UEVE") == 200
    assert "Nothing waits for your approval" in json.dumps(bot.wait_for_home("UEVE", "Your conversations"))

    assert bot.click_home("UBOSS", "run_code", containing=root) == 200
    bot.wait_for_text(root, "prices YTD (sample data). TERMINATE")
    (result,) = results(bot, root)
    assert "plotted prices: NVDA" in json.dumps(result["blocks"])
    assert bot.cards(root) == []
    decided = json.dumps(bot.thread(root))
    assert "Approved by <@UBOSS>" in decided

    bot.open_home("UBOSS")  # drawn again: nothing waits any more, the conversation is listed
    bot.wait_until(
        lambda: "Nothing waits for your approval" in json.dumps(bot.home("UBOSS")),
        timeout=20,
        what="the Home tab without the run",
    )
    assert "awaiting human" in json.dumps(bot.home("UBOSS"))
