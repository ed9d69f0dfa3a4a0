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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.typing import EncodableT
from rq import Queue, Retry
from rq.defaults import RQ_KEY_PREFIX
from rq.exceptions import DuplicateJobError
from rq.job import Job, JobStatus
from rq.rate_limit import ACQUIRE_AND_ENQUEUE_SCRIPT, RateLimit, RateLimitRegistry
from rq.serializers import JSONSerializer
from rq.utils import current_timestamp, now, utcformat

from agentbot.conversation.state import ConversationKey
from agentbot.errors import StoreError

QUEUE_NAME = "agentbot"
STEP_FUNCTION = "agentbot.jobs.step"
# Retries re-run a step whose Slack post or Redis write failed transiently; the step is idempotent.
# The first is at once: a later one goes through rq's scheduler, and the scheduler of a worker that
# died with its step holds its lock for another minute (`agentbot.workers`: a dead worker's step).
RETRY_INTERVALS = [0, 5, 15, 30, 60]

logger = logging.getLogger(__name__)

# rq's enqueue of a rate-limited job (`Queue._enqueue_rate_limited_job`: the queue registered, the
# limit's config, the job hash, its place in the limit's waiting set), then rq's own promotion script
# (`rq.rate_limit.ACQUIRE_AND_ENQUEUE_SCRIPT`, unchanged, as a function), in one script: one round
# trip instead of four, and a script can run it after the web's dedupe and append (the ack path).
# `enqueue_step(k, a)` takes its 7 keys from KEYS[k+1..] and its arguments from ARGV[a+1..], the job's
# fields last (`StepWrites`). tests/integration/test_queue_keys.py checks the keys against rq's.
ENQUEUE_STEP_LUA = (
    "local function rq_acquire(KEYS, ARGV)\n"
    + ACQUIRE_AND_ENQUEUE_SCRIPT
    + """
end
local function enqueue_step(k, a)
  redis.call('SADD', KEYS[k + 2], KEYS[k + 3])
  redis.call('SADD', KEYS[k + 4], ARGV[a + 1])
  redis.call('HSET', KEYS[k + 5], 'concurrency', ARGV[a + 2])
  redis.call('HSET', KEYS[k + 1], unpack(ARGV, a + 8))
  redis.call('ZADD', KEYS[k + 7], ARGV[a + 3], ARGV[a + 7])
  local promote = {ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]}
  return rq_acquire({KEYS[k + 6], KEYS[k + 7]}, promote)
end
"""
)


@dataclass(frozen=True)
class StepWrites:
    """The keys and arguments of `enqueue_step` in `ENQUEUE_STEP_LUA` for one step job."""

    keys: list[str]
    args: list[EncodableT]


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
        self._client = client
        self._engine_queues: dict[str, Queue] = {}
        self._enqueue_script = client.register_script(ENQUEUE_STEP_LUA + "return enqueue_step(0, 0)")
        self._timeout = step_timeout
        self._intervals = retry_intervals or RETRY_INTERVALS
        self._scheduler = scheduler  # False: no rq scheduler runs (embedded mode); timers stand in
        self._timers: dict[str, threading.Timer] = {}

    @property
    def queue(self) -> Queue:
        """The general queue: every step, but the sandbox steps of an engine other workers serve."""
        return self._queue

    def engine_queue(self, engine: str) -> Queue:
        """The queue of `engine`'s sandbox steps, taken by the workers serving it (before the general one)."""
        if engine not in self._engine_queues:
            name = f"{self._queue.name}-engine-{engine}"
            self._engine_queues[engine] = Queue(name, connection=self._client, serializer=JSONSerializer)
        return self._engine_queues[engine]

    def enqueue_step(self, key: ConversationKey, *, engine: str | None = None) -> None:
        try:
            writes = self.step_writes(key, self.engine_queue(engine) if engine else self._queue)
            self._enqueue_script(keys=writes.keys, args=writes.args)
        except redis.RedisError as exc:
            raise StoreError(f"redis: step not enqueued: {exc}", retryable=True) from exc

    def step_writes(self, key: ConversationKey, queue: Queue | None = None) -> StepWrites:
        """A step for `key`, as `ENQUEUE_STEP_LUA` writes it (`RedisStore.append_event_once` runs it too)."""
        queue = queue or self._queue
        job = queue.create_job(
            STEP_FUNCTION, args=(key.model_dump(),), job_id=f"step-{key.slug}-{uuid.uuid4().hex[:12]}",
            timeout=self._timeout, status=JobStatus.RATE_LIMITED, **self._options(key),
        )  # fmt: skip
        job.redis_server_version = queue.get_redis_server_version()  # as `_enqueue_rate_limited_job` does
        limit = f"conv-{key.slug}"
        assert job.rate_limit_key == limit  # `_options`' RateLimit
        fields = [part for pair in job.to_dict().items() for part in pair]
        keys = [
            job.key, Queue.redis_queues_keys, queue.key, RateLimitRegistry.rl_keys_key,
            f"{RQ_KEY_PREFIX}:rl:{limit}", f"{RQ_KEY_PREFIX}:rl:{limit}:allowed",
            f"{RQ_KEY_PREFIX}:rl:{limit}:rate_limited",
        ]  # fmt: skip
        args: list[EncodableT] = [
            limit, 1, current_timestamp(), utcformat(now()), Queue.redis_queue_namespace_prefix,
            Job.redis_job_namespace_prefix, job.id, *fields,
        ]  # fmt: skip
        return StepWrites(keys=keys, args=args)

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
