"""The `JobQueue` on RQ: enqueues `agentbot.jobs.step` (JSON serializer, never pickle).

Steps of one conversation never overlap: each is enqueued under rq's `RateLimit(conv-<slug>, 1)`, so a
second step waits (without holding a worker) until the first ends. Different conversations run in
parallel on as many workers as there are.

A step for later (a card's expiry) is an rq scheduled job (`Queue.enqueue_at`), moved to the queue at
its time by the scheduler that `agentbot worker` runs (`Worker.work(with_scheduler=True)`). In the
embedded mode there is no scheduler process (a forked scheduler cannot see the in-memory Redis), so a
timer thread of the same process enqueues the step at its time instead.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.rate_limit import RateLimit
from rq.serializers import JSONSerializer

from agentbot.conversation.state import ConversationKey

QUEUE_NAME = "agentbot"
STEP_FUNCTION = "agentbot.jobs.step"
# Retries re-run a step whose Slack post or Redis write failed transiently; the step is idempotent.
# The first is at once: a later one goes through rq's scheduler, and the scheduler of a worker that
# died with its step holds its lock for another minute (`agentbot.workers`: a dead worker's step).
RETRY_INTERVALS = [0, 5, 15, 30, 60]

logger = logging.getLogger(__name__)


class RQJobQueue:
    """The `JobQueue` on RQ."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        queue_name: str = QUEUE_NAME,
        step_timeout: int = 900,
        retry_intervals: list[int] | None = None,
        scheduler: bool = True,
    ) -> None:
        self._queue = Queue(queue_name, connection=client, serializer=JSONSerializer)
        self._timeout = step_timeout
        self._intervals = retry_intervals or RETRY_INTERVALS
        self._scheduler = scheduler  # False: no rq scheduler runs (embedded mode); timers stand in
        self._timers: dict[str, threading.Timer] = {}

    @property
    def queue(self) -> Queue:
        return self._queue

    def enqueue_step(self, key: ConversationKey) -> None:
        with self._queue.connection.pipeline() as pipe:
            self.enqueue_step_on(pipe, key)
            pipe.execute()

    def enqueue_step_on(self, pipe: Pipeline, key: ConversationKey) -> None:
        """Write a step for `key` on `pipe` (a transaction): it is enqueued when, and only if, `pipe` runs.

        rq's own writes of a rate-limited enqueue (the job, its place in the conversation's limit, the
        promotion script) in one round trip, instead of the three `Queue.enqueue` makes: the web's ack
        stores the event and its step in one transaction (`RedisStore.append_event_once`).
        """
        job = self._queue.create_job(
            STEP_FUNCTION, args=(key.model_dump(),), job_id=f"step-{key.slug}-{uuid.uuid4().hex[:12]}",
            timeout=self._timeout, **self._options(key),
        )  # fmt: skip
        pipe.sadd(self._queue.redis_queues_keys, self._queue.key)  # as `Queue.enqueue_job` registers it
        # rq documents this path (`pipeline`: "the job's writes and promotion are queued on it").
        self._queue._enqueue_rate_limited_job(job, pipeline=pipe)

    def enqueue_step_at(self, key: ConversationKey, at: datetime, *, name: str) -> None:
        """A step for `key` at `at`, once per `name`: `unique` makes a repeat a no-op, not a second job."""
        job_id = f"wake-{key.slug}-{name}"
        if not self._scheduler:
            self._start_timer(job_id, key, at)
            return
        try:
            self._queue.enqueue_at(
                at,
                STEP_FUNCTION,
                key.model_dump(),
                job_id=job_id,
                unique=True,
                job_timeout=self._timeout,
                **self._options(key),
            )
        except DuplicateJobError:
            logger.debug("conversation %s: step %s is already scheduled", key.id, job_id)

    def _options(self, key: ConversationKey) -> dict[str, Any]:
        return {
            "rate_limit": RateLimit(key=f"conv-{key.slug}", concurrency=1),
            "retry": Retry(max=len(RETRY_INTERVALS), interval=self._intervals),
            "result_ttl": 60,
            "failure_ttl": 7 * 86400,
        }

    def _start_timer(self, job_id: str, key: ConversationKey, at: datetime) -> None:
        if job_id in self._timers:
            return
        delay = max((at - datetime.now(UTC)).total_seconds(), 0.0)
        timer = threading.Timer(delay, self.enqueue_step, args=(key,))
        timer.daemon = True  # embedded state ends with the process anyway
        self._timers[job_id] = timer
        timer.start()
