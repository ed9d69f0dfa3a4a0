"""Metrics: the port wrappers count what passes through them; forked processes add up in one view."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentbot import metrics
from agentbot.conversation.code import CodeBlock, CodeResult, EgressGrant, EgressReport, InputFile
from agentbot.conversation.llm import ChatMessage, Completion, ToolSpec
from agentbot.errors import LLMError, SandboxError
from agentbot.metrics import MeteredExecutor, MeteredLLM, Metrics, run_outcome

HELLO = (ChatMessage(role="user", content="hello"),)
BLOCK = (CodeBlock(code="print(1)", language="python"),)


class ScriptedLLM:
    """The `LLM` port answering from a list: a `Completion`, or an `LLMError` to raise."""

    def __init__(self, *answers: Completion | LLMError) -> None:
        self.answers = list(answers)
        self.models: list[str | None] = []

    def complete(
        self, messages: Sequence[ChatMessage], *, model: str | None = None, tools: Sequence[ToolSpec] = ()
    ) -> Completion:
        self.models.append(model)
        answer = self.answers.pop(0)
        if isinstance(answer, LLMError):
            raise answer
        return answer


class ScriptedExecutor:
    """The `CodeExecutor` port answering from a list: a `CodeResult`, or a `SandboxError` to raise."""

    def __init__(self, *answers: CodeResult | SandboxError) -> None:
        self.answers = list(answers)

    def run(
        self, workspace: str, blocks: Sequence[CodeBlock], *, grant: EgressGrant | None = None
    ) -> CodeResult:
        answer = self.answers.pop(0)
        if isinstance(answer, SandboxError):
            raise answer
        return answer

    def put_files(self, workspace: str, files: Sequence[InputFile]) -> None:
        pass

    def remove_workspace(self, workspace: str) -> None:
        pass


def value(m: Metrics, name: str, **labels: str) -> float:
    found = m.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def scraped(text: str, name: str, **labels: str) -> float:
    """A sample's value in the text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_llm_calls_tokens_and_cost_are_counted_per_model() -> None:
    m = Metrics()
    priced = Completion(content="hi", model="gpt-4o", prompt_tokens=12, completion_tokens=3, cost_usd=0.25)
    unpriced = Completion(content="hi", model="local", prompt_tokens=5, completion_tokens=2, cost_usd=None)
    llm = MeteredLLM(ScriptedLLM(priced, unpriced), m)

    assert llm.complete(HELLO) is priced
    llm.complete(HELLO, model="local")

    assert value(m, "agentbot_llm_calls_total", outcome="ok") == 2
    assert value(m, "agentbot_llm_tokens_total", model="gpt-4o", kind="prompt") == 12
    assert value(m, "agentbot_llm_tokens_total", model="gpt-4o", kind="completion") == 3
    assert value(m, "agentbot_llm_tokens_total", model="local", kind="prompt") == 5
    assert value(m, "agentbot_llm_cost_usd_total", model="gpt-4o") == 0.25
    assert value(m, "agentbot_llm_cost_usd_total", model="local") == 0  # unknown, never counted as $0
    assert value(m, "agentbot_llm_seconds_count") == 2


def test_a_failed_llm_call_is_counted_and_raised_and_the_default_call_stays_without_model() -> None:
    m = Metrics()
    inner = ScriptedLLM(LLMError("down", user_message="The model could not be reached."))
    with pytest.raises(LLMError):
        MeteredLLM(inner, m).complete(HELLO)
    assert inner.models == [None]
    assert value(m, "agentbot_llm_calls_total", outcome="error") == 1
    assert value(m, "agentbot_llm_seconds_count") == 1


@pytest.mark.parametrize(
    ("result", "outcome"),
    [
        (CodeResult(exit_code=0, output=""), "succeeded"),
        (CodeResult(exit_code=1, output="Traceback"), "failed"),
        (CodeResult(exit_code=124, output="", timed_out=True), "timed_out"),
        (None, "error"),
    ],
)
def test_run_outcome(result: CodeResult | None, outcome: str) -> None:
    assert run_outcome(result) == outcome


def test_runs_are_counted_by_outcome_with_their_blocked_hosts() -> None:
    m = Metrics()
    blocked = CodeResult(exit_code=1, output="", egress=EgressReport(blocked=("data.example", "x.test:8080")))
    executor = MeteredExecutor(
        ScriptedExecutor(blocked, CodeResult(exit_code=0, output=""), SandboxError("engine gone")), m
    )
    executor.run("ws", BLOCK)
    executor.run("ws", BLOCK)
    with pytest.raises(SandboxError):
        executor.run("ws", BLOCK)

    assert value(m, "agentbot_runs_total", outcome="failed") == 1
    assert value(m, "agentbot_runs_total", outcome="succeeded") == 1
    assert value(m, "agentbot_runs_total", outcome="error") == 1
    assert value(m, "agentbot_blocked_hosts_total") == 2
    assert value(m, "agentbot_run_seconds_count") == 3


def test_steps_count_by_outcome_and_render_as_prometheus_text() -> None:
    m = Metrics()
    m.step_done("ok", 0.2)
    m.step_done("failed", 1.5)
    text = m.render().decode()
    assert scraped(text, "agentbot_steps_total", outcome="ok") == 1
    assert scraped(text, "agentbot_step_seconds_count", outcome="failed") == 1
    assert "# TYPE agentbot_ack_seconds histogram" in text


def _count_in_child(m: Metrics, steps: int) -> None:
    pid = os.fork()
    if pid == 0:  # the child: count, then leave without running the parent's cleanup
        for _ in range(steps):
            m.step_done("ok", 0.1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("children", ["sequential", "parallel"])
def test_forked_processes_add_up_in_the_multiprocess_view(children: metrics.Children) -> None:
    with metrics.multiprocess_dir(children) as directory:
        m = Metrics()
        for steps in (2, 3, 4):  # three work horses (or web processes), one after the other
            _count_in_child(m, steps)
        m.step_done("ok", 0.1)  # and the serving process itself

        assert scraped(m.render().decode(), "agentbot_steps_total", outcome="ok") == 10
        counter_files = sorted(p.name for p in directory.iterdir() if p.name.startswith("counter_"))
    # sequential children share one file (a busy worker leaves no file per step); parallel ones don't
    assert len(counter_files) == (2 if children == "sequential" else 4)
    assert not directory.exists()
    assert metrics.MULTIPROC_ENV not in os.environ


def test_a_metered_streaming_llm_still_streams_and_is_counted() -> None:
    from agentbot.conversation.ports import StreamingLLM
    from agentbot.metrics import metered_llm

    class Streaming(ScriptedLLM):
        def stream(
            self, messages: Sequence[ChatMessage], *, on_text: Callable[[str], None], model: str | None = None
        ) -> Completion:
            on_text("partial")
            return self.complete(messages, model=model)

    shown: list[str] = []
    metered = metered_llm(Streaming(Completion(content="done", model="m")), Metrics())
    assert isinstance(metered, StreamingLLM)
    assert metered.stream([], on_text=shown.append).content == "done"
    assert shown == ["partial"]
    assert not isinstance(metered_llm(ScriptedLLM(), Metrics()), StreamingLLM)
