"""SlackPlatform against the fake Slack Web API on loopback: posts, lookups, uploads, retries, errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from agentbot.conversation.code import Artifact, CodeBlock
from agentbot.conversation.events import FileRef
from agentbot.conversation.posts import AgentPost, ApprovalPost, Decision, EphemeralPost, ResultPost
from agentbot.conversation.state import ConversationKey
from agentbot.errors import PlatformError
from agentbot.settings import load_settings
from agentbot.slack.platform import SlackPlatform, make_client
from agentbot.store import RedisSlackStore
from tests.fakes.file_host import FakeFileHost
from tests.fakes.slack_server import TOKEN, FakeSlack

KEY = ConversationKey(team_id="T0001", channel_id="C0001", thread_ts="1700000000.000100")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
AT = datetime(2025, 1, 2, tzinfo=UTC)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def platform(slack: FakeSlack) -> SlackPlatform:
    settings = load_settings(slack_bot_token=TOKEN, slack_api_url=slack.api_url, max_file_bytes=1_000)
    return SlackPlatform.from_settings(settings)


def card(code: str = "print(1)", decision: Decision | None = None) -> ApprovalPost:
    return ApprovalPost(
        run_id="r1",
        code_hash="h1",
        blocks=(CodeBlock(code=code, language="python"),),
        requested_by="UANA",
        approvers=(),
        expires_at=AT + timedelta(hours=1),
        decision=decision,
    )


def test_post_goes_into_the_thread_under_the_agents_name_with_effect_metadata(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    ts = platform.post(KEY, AgentPost(speaker="assistant", text="Hello **there**"), effect_id="e-1")
    (call,) = slack.calls_to("chat.postMessage")
    assert call.args["channel"] == "C0001" and call.args["thread_ts"] == KEY.thread_ts
    assert call.args["username"] == "assistant" and call.args["icon_emoji"] == ":robot_face:"
    assert call.args["blocks"] == [{"type": "markdown", "text": "Hello **there**"}]
    assert call.args["metadata"] == {"event_type": "agentbot_effect", "event_payload": {"effect_id": "e-1"}}
    assert ts and platform.find_posted(KEY, "e-1") == ts


def test_find_posted_finds_nothing_for_an_unknown_effect(slack: FakeSlack, platform: SlackPlatform) -> None:
    platform.post(KEY, AgentPost(speaker="assistant", text="one"), effect_id="e-1")
    assert platform.find_posted(KEY, "e-2") is None
    calls = slack.calls_to("conversations.replies")
    assert calls[-1].args["include_all_metadata"] is True


def test_long_text_posts_several_messages_and_find_posted_returns_the_first(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    text = "\n".join(f"line {i} " + "x" * 60 for i in range(300))
    ts = platform.post(KEY, AgentPost(speaker="assistant", text=text), effect_id="e-long")
    assert len(slack.calls_to("chat.postMessage")) == 3
    assert platform.find_posted(KEY, "e-long") == ts


def test_card_with_long_code_attaches_the_full_code_in_the_thread(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    code = "\n".join(f"print({i})" for i in range(500))
    platform.post(KEY, card(code), effect_id="e-card")
    (upload,) = slack.uploaded()
    assert (upload["channel_id"], upload["thread_ts"]) == ("C0001", KEY.thread_ts)
    assert upload["files"][0]["filename"] == "run-r1.py"
    assert upload["files"][0]["content"].decode() == code


def test_update_replaces_the_card_and_is_paced(slack: FakeSlack) -> None:
    platform = SlackPlatform(make_client(TOKEN, slack.api_url), update_interval=0.3)
    ts = platform.post(KEY, card(), effect_id="e-card")
    decided = card(decision=Decision(outcome="approved", user_id="UANA", at=AT))
    started = time.monotonic()
    platform.update(KEY, ts, decided)
    platform.update(KEY, ts, decided)
    assert time.monotonic() - started >= 0.3
    first, second = slack.calls_to("chat.update")
    assert second.at - first.at >= 0.29
    assert first.args["ts"] == ts
    assert all(block["type"] != "actions" for block in first.args["blocks"])
    assert (
        "Approved by <@UANA>" in slack.thread("C0001", KEY.thread_ts)[-1]["blocks"][-1]["elements"][0]["text"]
    )


@pytest.mark.redis
def test_update_pacing_is_shared_through_redis(slack: FakeSlack, redis_client: redis.Redis) -> None:
    store = RedisSlackStore(redis_client)
    one = SlackPlatform(make_client(TOKEN, slack.api_url), store=store, update_interval=0.3)
    two = SlackPlatform(make_client(TOKEN, slack.api_url), store=store, update_interval=0.3)
    ts = one.post(KEY, card(), effect_id="e-card")
    one.update(KEY, ts, card())
    two.update(KEY, ts, card())
    first, second = slack.calls_to("chat.update")
    assert second.at - first.at >= 0.25


ARTIFACTS = [
    Artifact(name="chart.png", mime_type="image/png", size=len(PNG), content=PNG),
    Artifact(name="data.csv", mime_type="text/csv", size=3, content=b"a,b"),
]


def test_upload_sends_artifacts_into_the_thread_in_three_steps(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    platform.upload(KEY, ARTIFACTS, run_id="r1")
    methods = slack.methods()
    assert methods.count("files.getUploadURLExternal") == 2
    assert methods[-1] == "files.completeUploadExternal"
    (upload,) = slack.uploaded()
    assert (upload["channel_id"], upload["thread_ts"]) == ("C0001", KEY.thread_ts)
    assert upload["initial_comment"] == ":paperclip: Files from run r1"
    assert [f["content"] for f in upload["files"]] == [PNG, b"a,b"]
    first_url_call = slack.calls_to("files.getUploadURLExternal")[0]
    assert first_url_call.args["filename"] == "chart.png" and "alt_txt" in first_url_call.args


def test_ephemeral_goes_only_to_its_user(slack: FakeSlack, platform: SlackPlatform) -> None:
    platform.post(KEY, EphemeralPost(user_id="UBOB", text="Only <@UANA> can approve."), effect_id="e-eph")
    (call,) = slack.calls_to("chat.postEphemeral")
    assert (call.args["user"], call.args["channel"], call.args["thread_ts"]) == (
        "UBOB",
        "C0001",
        KEY.thread_ts,
    )
    assert not slack.calls_to("chat.postMessage")


def test_rate_limit_is_waited_out_with_retry_after(slack: FakeSlack, platform: SlackPlatform) -> None:
    slack.fail("chat.postMessage", status=429, times=1, retry_after=1)
    started = time.monotonic()
    platform.post(KEY, ResultPost(run_id="r1", exit_code=0, output="ok"), effect_id="e-1")
    assert time.monotonic() - started >= 0.9
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert len(slack.thread("C0001", KEY.thread_ts)) == 1


def test_server_error_on_post_is_not_blindly_retried(slack: FakeSlack, platform: SlackPlatform) -> None:
    slack.fail("chat.postMessage", status=500, times=5)
    with pytest.raises(PlatformError) as raised:
        platform.post(KEY, AgentPost(speaker="assistant", text="hi"), effect_id="e-1")
    assert raised.value.retryable
    assert len(slack.calls_to("chat.postMessage")) == 1


def test_server_error_on_update_is_retried(slack: FakeSlack, platform: SlackPlatform) -> None:
    ts = platform.post(KEY, card(), effect_id="e-card")
    slack.fail("chat.update", status=500, times=1)
    platform.update(KEY, ts, card())
    assert len(slack.calls_to("chat.update")) == 2


def test_slack_refusal_becomes_a_platform_error_with_words(slack: FakeSlack, platform: SlackPlatform) -> None:
    slack.fail("chat.postMessage", status=200, error="not_in_channel")
    with pytest.raises(PlatformError) as raised:
        platform.post(KEY, AgentPost(speaker="assistant", text="hi"), effect_id="e-1")
    assert not raised.value.retryable
    assert "/invite" in raised.value.user_message


def test_download_uses_the_bot_token(slack: FakeSlack, platform: SlackPlatform) -> None:
    url = slack.add_file("F1", b"a,b\n1,2\n")
    assert platform.download(FileRef(name="x.csv", url=url, size=8, mime_type="text/csv")) == b"a,b\n1,2\n"


@pytest.mark.parametrize("declared", [5_000, 0])
def test_download_refuses_files_above_the_cap(
    slack: FakeSlack, platform: SlackPlatform, declared: int
) -> None:
    url = slack.add_file("F2", b"x" * 2_000)
    with pytest.raises(PlatformError) as raised:
        platform.download(FileRef(name="big.csv", url=url, size=declared))
    assert "limit" in raised.value.user_message and "big.csv" in raised.value.user_message


def test_download_never_sends_the_token_elsewhere(slack: FakeSlack, platform: SlackPlatform) -> None:
    with pytest.raises(PlatformError):
        platform.download(FileRef(name="x.csv", url="http://evil.example/x.csv"))


@pytest.fixture
def file_host() -> Iterator[FakeFileHost]:
    with FakeFileHost() as host:
        yield host


@pytest.mark.parametrize("host_name", ["127.0.0.1", "localhost"])
def test_download_redirected_to_another_host_does_not_forward_the_token(
    slack: FakeSlack, platform: SlackPlatform, file_host: FakeFileHost, host_name: str
) -> None:
    # Another port on loopback is another origin, as is another host name for the same address.
    cdn_url = file_host.add("x.csv", b"a,b\n1,2\n").replace("127.0.0.1", host_name)
    url = slack.add_redirect("F4", cdn_url)
    assert platform.download(FileRef(name="x.csv", url=url, mime_type="text/csv")) == b"a,b\n1,2\n"
    assert file_host.seen == [("/files/x.csv", None)]


def test_download_redirected_within_slacks_host_keeps_the_token(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    target = slack.add_file("F5", b"a,b\n3,4\n")
    url = slack.add_redirect("F6", target)
    assert platform.download(FileRef(name="x.csv", url=url, mime_type="text/csv")) == b"a,b\n3,4\n"


def test_download_following_a_chain_back_to_slack_sends_no_token_after_leaving(
    slack: FakeSlack, platform: SlackPlatform, file_host: FakeFileHost
) -> None:
    # Slack -> elsewhere -> Slack: once the token was dropped it is not put back, so Slack's file
    # host answers with its sign-in page, and that is an error rather than the file.
    back = slack.add_file("F7", b"a,b")
    url = slack.add_redirect("F8", file_host.redirect(back))
    with pytest.raises(PlatformError):
        platform.download(FileRef(name="x.csv", url=url, mime_type="text/csv"))
    assert [auth for _, auth in file_host.seen] == [None]


def test_download_of_a_missing_file_is_a_retryable_error(slack: FakeSlack, platform: SlackPlatform) -> None:
    url = slack.add_redirect("F9", f"{slack.url}/nowhere")
    with pytest.raises(PlatformError) as raised:
        platform.download(FileRef(name="x.csv", url=url, mime_type="text/csv"))
    assert raised.value.retryable and "x.csv" in raised.value.user_message


def test_download_of_slacks_sign_in_page_is_an_error(slack: FakeSlack) -> None:
    platform = SlackPlatform(make_client("xoxb-wrong", slack.api_url))
    url = slack.add_file("F3", b"a,b")
    with pytest.raises(PlatformError) as raised:
        platform.download(FileRef(name="x.csv", url=url, mime_type="text/csv"))
    assert "files:read" in raised.value.user_message


def test_status_uses_the_thread_status(slack: FakeSlack, platform: SlackPlatform) -> None:
    platform.set_status(KEY, "is thinking…")
    (call,) = slack.calls_to("assistant.threads.setStatus")
    assert call.args == {"channel_id": "C0001", "thread_ts": KEY.thread_ts, "status": "is thinking…"}


def test_status_falls_back_to_a_reaction_and_remembers(slack: FakeSlack, platform: SlackPlatform) -> None:
    slack.fail("assistant.threads.setStatus", status=200, error="not_allowed_token_type")
    platform.set_status(KEY, "is thinking…")
    platform.set_status(KEY, "")
    assert slack.methods() == ["assistant.threads.setStatus", "reactions.add", "reactions.remove"]
    assert slack.calls_to("reactions.add")[0].args == {
        "channel": "C0001",
        "timestamp": KEY.thread_ts,
        "name": "eyes",
    }


def test_status_never_raises(slack: FakeSlack) -> None:
    platform = SlackPlatform(make_client(TOKEN, "http://127.0.0.1:9/api/", idempotent=False))
    platform.set_status(KEY, "is thinking…")
    slack.fail("assistant.threads.setStatus", status=200, error="channel_not_found")
    slack.fail("reactions.add", status=200, error="already_reacted")
    SlackPlatform(make_client(TOKEN, slack.api_url)).set_status(KEY, "x")


def test_upload_whose_answer_was_lost_is_not_shared_again_when_resumed(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    slack.add_message("C0001", user="UANA", text="plot it", ts=KEY.thread_ts)
    platform.upload(KEY, ARTIFACTS[:1], run_id="r1")  # an earlier run's files, shared once
    slack.fail("files.completeUploadExternal", status=500, after=True)  # shared, but the answer is lost
    with pytest.raises(PlatformError) as lost:
        platform.upload(KEY, ARTIFACTS, run_id="r2")
    assert lost.value.retryable
    platform.upload(KEY, ARTIFACTS, run_id="r2", resume=True)  # the retry of the step
    assert [u["initial_comment"] for u in slack.uploaded()] == [
        ":paperclip: Files from run r1",
        ":paperclip: Files from run r2",
    ]
    platform.upload(KEY, ARTIFACTS, run_id="r3", resume=True)  # resuming what never got through: shares
    assert len(slack.uploaded()) == 3


def test_upload_of_more_files_than_one_share_takes_resumes_batch_by_batch(
    slack: FakeSlack, platform: SlackPlatform
) -> None:
    slack.add_message("C0001", user="UANA", text="plot it", ts=KEY.thread_ts)
    many = [Artifact(name=f"f{i}.txt", mime_type="text/plain", size=1, content=b"x") for i in range(12)]
    slack.fail("files.completeUploadExternal", status=500, times=1, after=True)
    with pytest.raises(PlatformError):
        platform.upload(KEY, many, run_id="r1")
    platform.upload(KEY, many, run_id="r1", resume=True)
    shared = slack.uploaded()
    assert [u["initial_comment"] for u in shared] == [
        ":paperclip: Files from run r1 (1/2)",
        ":paperclip: Files from run r1 (2/2)",
    ]
    assert sum(len(u["files"]) for u in shared) == 12
