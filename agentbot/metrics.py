"""Prometheus metrics: what agentbot counts, the port wrappers that count it, and how processes serve it.

    agentbot_events_total{type}            events stored in conversation inboxes (start, approve, ...)
    agentbot_steps_total{outcome}          conversation steps: ok, retried (a transient error), failed
    agentbot_step_seconds{outcome}         step duration
    agentbot_llm_calls_total{outcome}      model calls: ok, error (after the SDK's retries and fallbacks)
    agentbot_llm_seconds                   model call latency
    agentbot_llm_tokens_total{model,kind}  tokens, kind = prompt or completion
    agentbot_llm_cost_usd_total{model}     model cost, for models with a known price
    agentbot_runs_total{outcome}           code runs: succeeded, failed, timed_out, error (not run at all)
    agentbot_run_seconds                   code run duration
    agentbot_approvals_total{decision}     approval cards decided: approved, skipped, cancelled, expired
    agentbot_blocked_hosts_total           hosts the egress proxy refused (each run's audit)
    agentbot_ack_seconds                   web: time to answer Slack's request (the 3-second ack)

Counted at the ports, never in the engine (`conversation/` imports no prometheus_client): `MeteredLLM`
and `MeteredExecutor` wrap the LLM and the executor, `MeteredStore` the store (events appended,
approval decisions saved), `agentbot.jobs.step` counts steps and `agentbot.web.WebApp` acks.

Several processes, one view: gunicorn runs `WEB_CONCURRENCY` web processes, and rq runs each step in a
forked work horse that exits after it. Both use prometheus-client's multiprocess mode: `agentbot web`
and `agentbot worker` each make a temporary directory (`PROMETHEUS_MULTIPROC_DIR`) before anything
is counted and remove it at exit. Web processes write one file each; a worker's work horses, which
run one at a time, share one file (so a busy worker does not leave a file per step), and the worker
serves its directory on `AGENTBOT_METRICS_PORT`: one port per worker process, as each container or
machine of workers usually runs one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import redis
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from agentbot.conversation.code import CodeBlock, CodeResult, EgressGrant, InputFile
from agentbot.conversation.events import Event
from agentbot.conversation.llm import ChatMessage, Completion, TextSink, ToolSpec
from agentbot.conversation.ports import LLM, CodeExecutor, StreamingLLM
from agentbot.conversation.state import ConversationKey, ConversationState
from agentbot.queue import StepWrites
from agentbot.store import RedisStore

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client itself
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Slack's ack limit is 3 s; the buckets resolve the fast path (ms) and the tail near the limit.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
DECISIONS = frozenset({"approved", "skipped", "cancelled", "expired"})
RUNS_REMEMBERED = 10_000  # conversations whose pending run a long-lived process remembers

_directory: Path | None = None  # the multiprocess directory of this process, once chosen


class Metrics:
    """The metric objects of one process, in their own registry (tests make as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self.events = Counter("agentbot_events", "Events stored in inboxes", ["type"], registry=r)
        self.steps = Counter("agentbot_steps", "Conversation steps", ["outcome"], registry=r)
        self.step_seconds = _histogram(r, "agentbot_step_seconds", "Step duration", ["outcome"])
        self.llm_calls = Counter("agentbot_llm_calls", "Model calls", ["outcome"], registry=r)
        self.llm_seconds = _histogram(r, "agentbot_llm_seconds", "Model call latency")
        self.tokens = Counter("agentbot_llm_tokens", "Model tokens", ["model", "kind"], registry=r)
        self.cost = Counter("agentbot_llm_cost_usd", "Model cost (known prices)", ["model"], registry=r)
        self.runs = Counter("agentbot_runs", "Code runs", ["outcome"], registry=r)
        self.run_seconds = _histogram(r, "agentbot_run_seconds", "Code run duration")
        self.approvals = Counter("agentbot_approvals", "Approval cards decided", ["decision"], registry=r)
        self.blocked_hosts = Counter("agentbot_blocked_hosts", "Hosts the egress proxy refused", registry=r)
        self.ack_seconds = _histogram(r, "agentbot_ack_seconds", "Time to ack Slack", buckets=ACK_BUCKETS)

    def step_done(self, outcome: str, seconds: float) -> None:
        self.steps.labels(outcome).inc()
        self.step_seconds.labels(outcome).observe(seconds)

    def llm_done(self, completion: Completion | None, seconds: float) -> None:
        self.llm_seconds.observe(seconds)
        self.llm_calls.labels("error" if completion is None else "ok").inc()
        if completion is None:
            return
        self.tokens.labels(completion.model, "prompt").inc(completion.prompt_tokens)
        self.tokens.labels(completion.model, "completion").inc(completion.completion_tokens)
        if completion.cost_usd is not None:
            self.cost.labels(completion.model).inc(completion.cost_usd)

    def run_done(self, result: CodeResult | None, seconds: float) -> None:
        self.run_seconds.observe(seconds)
        self.runs.labels(run_outcome(result)).inc()
        if result is not None and result.egress is not None and result.egress.blocked:
            self.blocked_hosts.inc(len(result.egress.blocked))

    def render(self) -> bytes:
        """The text exposition: every process's files in multiprocess mode, else this registry."""
        return generate_latest(_serving_registry() or self.registry)


def _histogram(
    registry: CollectorRegistry,
    name: str,
    text: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = STEP_BUCKETS,
) -> Histogram:
    return Histogram(name, text, labels, buckets=buckets, registry=registry)


def run_outcome(result: CodeResult | None) -> str:
    """`error` (the sandbox could not run it), `timed_out`, `succeeded` or `failed`."""
    if result is None:
        return "error"
    if result.timed_out:
        return "timed_out"
    return "succeeded" if result.exit_code == 0 else "failed"


# -- the ports, counted ------------------------------------------------------------------------------


class MeteredLLM:
    """The `LLM` port, counting calls, latency, tokens and cost (`metered_llm` makes one)."""

    def __init__(self, llm: LLM, metrics: Metrics) -> None:
        self._llm = llm
        self._metrics = metrics

    def complete(
        self, messages: Sequence[ChatMessage], *, model: str | None = None, tools: Sequence[ToolSpec] = ()
    ) -> Completion:
        # Without a model or tools, the call stays `complete(messages)`, as the driver makes it.
        if tools:
            return self._counted(lambda: self._llm.complete(messages, model=model, tools=tools))
        if model:
            return self._counted(lambda: self._llm.complete(messages, model=model))
        return self._counted(lambda: self._llm.complete(messages))

    def _counted(self, call: Callable[[], Completion]) -> Completion:
        started = time.perf_counter()
        completion: Completion | None = None
        try:
            completion = call()
            return completion
        finally:
            self._metrics.llm_done(completion, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)  # the adapter's own extras (`close`, `configs`)


class MeteredStreamingLLM(MeteredLLM):
    """A streaming `LLM`, counted: it stays a `StreamingLLM`, so replies are still shown live."""

    def __init__(self, llm: StreamingLLM, metrics: Metrics) -> None:
        super().__init__(llm, metrics)
        self._streaming = llm

    def stream(
        self, messages: Sequence[ChatMessage], *, on_text: TextSink, model: str | None = None
    ) -> Completion:
        return self._counted(lambda: self._streaming.stream(messages, on_text=on_text, model=model))


def metered_llm(llm: LLM, metrics: Metrics) -> MeteredLLM:
    """`llm` counted, keeping whether it streams."""
    return MeteredStreamingLLM(llm, metrics) if isinstance(llm, StreamingLLM) else MeteredLLM(llm, metrics)


class MeteredExecutor:
    """The `CodeExecutor` port, counting runs by outcome, their duration and blocked hosts."""

    def __init__(self, executor: CodeExecutor, metrics: Metrics) -> None:
        self._executor = executor
        self._metrics = metrics

    def run(
        self, workspace: str, blocks: Sequence[CodeBlock], *, grant: EgressGrant | None = None
    ) -> CodeResult:
        started = time.perf_counter()
        result: CodeResult | None = None
        try:
            result = self._executor.run(workspace, blocks, grant=grant)
            return result
        finally:
            self._metrics.run_done(result, time.perf_counter() - started)

    def put_files(self, workspace: str, files: Sequence[InputFile]) -> None:
        self._executor.put_files(workspace, files)

    def remove_workspace(self, workspace: str) -> None:
        self._executor.remove_workspace(workspace)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)


class MeteredStore(RedisStore):
    """The Redis store, counting events appended and approval decisions saved.

    A decision is a pending run that was `awaiting_approval` when this process loaded or saved the
    conversation and is saved with another status: a step loads before it saves, so that is each click
    (or expiry) the engine accepted, counted once, by the step that applied it.
    """

    def __init__(self, client: redis.Redis, metrics: Metrics, **options: Any) -> None:
        super().__init__(client, **options)
        self._metrics = metrics
        self._runs: dict[str, tuple[str, str]] = {}  # conversation id -> (run id, status) last seen

    def load(self, key: ConversationKey) -> ConversationState | None:
        state = super().load(key)
        if state is not None:
            self._remember(state)
        return state

    def save(self, state: ConversationState) -> ConversationState:
        saved = super().save(state)
        before, run = self._runs.get(saved.key.id), saved.run
        pending = before is not None and run is not None and before == (run.run_id, "awaiting_approval")
        if pending and run is not None and run.status in DECISIONS:
            self._metrics.approvals.labels(run.status).inc()
        self._remember(saved)
        return saved

    def append_event(self, key: ConversationKey, event: Event) -> str:
        event_id = super().append_event(key, event)
        self._metrics.events.labels(event.type).inc()
        return event_id

    def append_event_once(
        self, key: ConversationKey, event: Event, *, marker: str, ttl: int, then: StepWrites | None = None
    ) -> str | None:
        event_id = super().append_event_once(key, event, marker=marker, ttl=ttl, then=then)
        if event_id is not None:
            self._metrics.events.labels(event.type).inc()
        return event_id

    def _remember(self, state: ConversationState) -> None:
        if state.run is None:
            self._runs.pop(state.key.id, None)
            return
        if len(self._runs) >= RUNS_REMEMBERED:
            self._runs.clear()  # bounded; a decision in a forgotten conversation goes uncounted
        self._runs[state.key.id] = (state.run.run_id, state.run.status)


# -- serving -----------------------------------------------------------------------------------------


Children = Literal["parallel", "sequential"]


@contextlib.contextmanager
def multiprocess_dir(children: Children) -> Iterator[Path]:
    """Multiprocess mode for this process and its children, in a temporary directory removed at exit.

    `parallel` children (gunicorn's workers) write one file each; `sequential` ones (rq's work horses,
    one at a time) share one. Call before any metric is made in this process.
    """
    global _directory  # one directory per process, chosen once at start
    directory = Path(tempfile.mkdtemp(prefix="agentbot-metrics-"))
    before = values.ValueClass
    os.environ[MULTIPROC_ENV] = str(directory)  # prometheus_client reads it, here and in the children
    identifier = _identifier(children, os.getpid())
    values.ValueClass = values.MultiProcessValue(process_identifier=identifier)  # type: ignore[no-untyped-call]  # prometheus_client: no hints here
    _directory, owner = directory, os.getpid()
    try:
        yield directory
    finally:
        # A forked child (a gunicorn worker) leaving through this frame must not remove it for the rest.
        if os.getpid() == owner:
            _directory, values.ValueClass = None, before
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)


def _identifier(children: Children, main: int) -> Callable[[], str]:
    def identifier() -> str:
        pid = os.getpid()
        return str(pid) if children == "parallel" or pid == main else f"{main}-steps"

    return identifier


def _serving_registry() -> CollectorRegistry | None:
    if _directory is None:
        return None
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(_directory))  # type: ignore[no-untyped-call]  # no hints
    return registry


def serve(port: int, metrics: Metrics) -> bool:
    """Serve `/metrics` on `port` from a thread of this process; False (and a warning line) if it can't."""
    try:
        start_http_server(port, registry=_serving_registry() or metrics.registry)
    except OSError as exc:
        logger.warning("AGENTBOT_METRICS_PORT %d: cannot listen there (%s): no metrics from this worker",
                       port, exc.strerror or exc)  # fmt: skip
        return False
    logger.info("metrics at http://0.0.0.0:%d/metrics", port)
    return True
