"""The `JobQueue` on RQ: enqueues `agentbot.jobs.step` (JSON serializer, never pickle).

Steps of one conversation never overlap: each is enqueued under rq's `RateLimit(conv-<slug>, 1)`, so a
second step waits (without holding a worker) until the first ends. Different conversations run in
parallel on as many workers as there are.
"""

from __future__ import annotations

import uuid

import redis
from rq import Queue, Retry
from rq.rate_limit import RateLimit
from rq.serializers import JSONSerializer

from agentbot.conversation.state import ConversationKey

QUEUE_NAME = "agentbot"
STEP_FUNCTION = "agentbot.jobs.step"
# Retries re-run a step whose Slack post or Redis write failed transiently; the step is idempotent.
RETRY_INTERVALS = [1, 5, 15, 30, 60]


class RQJobQueue:
    """The `JobQueue` on RQ."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        queue_name: str = QUEUE_NAME,
        step_timeout: int = 900,
        retry_intervals: list[int] | None = None,
    ) -> None:
        self._queue = Queue(queue_name, connection=client, serializer=JSONSerializer)
        self._timeout = step_timeout
        self._intervals = retry_intervals or RETRY_INTERVALS

    @property
    def queue(self) -> Queue:
        return self._queue

    def enqueue_step(self, key: ConversationKey) -> None:
        self._queue.enqueue(
            STEP_FUNCTION,
            key.model_dump(),
            job_id=f"step-{key.slug}-{uuid.uuid4().hex[:12]}",
            rate_limit=RateLimit(key=f"conv-{key.slug}", concurrency=1),
            retry=Retry(max=len(RETRY_INTERVALS), interval=self._intervals),
            job_timeout=self._timeout,
            result_ttl=60,
            failure_ttl=7 * 86400,
        )
