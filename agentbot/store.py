"""Conversation state, inbox and run artifacts in Redis (the `ConversationStore` port).

Keys, all under `agentbot:` and all expiring after the conversation has been idle for `state_ttl`:
    conv:{id}   hash  v = version, s = state JSON
    inbox:{id}  stream of events (JSON); entries up to the last applied one are trimmed on save
    art:{run}   hash  file name -> bytes (expires after `artifact_ttl`)
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar, cast

import redis
from redis.typing import EncodableT

from agentbot.conversation.code import Artifact
from agentbot.conversation.events import EVENT_ADAPTER, Event
from agentbot.conversation.state import ConversationKey, ConversationState
from agentbot.errors import StoreError
from agentbot.queue import ENQUEUE_STEP_LUA, StepWrites

P = ParamSpec("P")
T = TypeVar("T")

# Compare-and-set: write the state only if nobody saved another version meanwhile.
_SAVE = """
local current = redis.call('HGET', KEYS[1], 'v') or '0'
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XTRIM', KEYS[2], 'MINID', ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
"""

# Dedupe and append in one round trip: the event goes into the inbox only if its marker was not set.
_APPEND_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return false end
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return id
"""
# The same with the conversation's step (rq's writes, `agentbot.queue.ENQUEUE_STEP_LUA`): the web's ack.
# Redis keeps what a script wrote before an error, so the marker comes last: a script cut short leaves
# at most a step with nothing new to do, and Slack's retry (the error answered 500) is not a duplicate.
_SUBMIT_ONCE = (
    ENQUEUE_STEP_LUA
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
enqueue_step(2, 3)
local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
return id
"""
)


def _translated(method: Callable[P, T]) -> Callable[P, T]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreError(f"redis: {exc}", retryable=True) from exc

    return wrapper


class RedisStore:
    """The `ConversationStore` on Redis (a real server, or fakeredis in the embedded mode)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        state_ttl: int = 30 * 86400,
        artifact_ttl: int = 86400,
        prefix: str = "agentbot",
    ) -> None:
        self._redis = client
        self._state_ttl = state_ttl
        self._artifact_ttl = artifact_ttl
        self._prefix = prefix
        self._save_script = client.register_script(_SAVE)
        self._append_once_script = client.register_script(_APPEND_ONCE)
        self._submit_once_script = client.register_script(_SUBMIT_ONCE)

    def state_key(self, key: ConversationKey) -> str:
        return f"{self._prefix}:conv:{key.id}"

    def inbox_key(self, key: ConversationKey) -> str:
        return f"{self._prefix}:inbox:{key.id}"

    @_translated
    def load(self, key: ConversationKey) -> ConversationState | None:
        raw = self._redis.hget(self.state_key(key), "s")
        return None if raw is None else ConversationState.model_validate_json(raw)

    @_translated
    def save(self, state: ConversationState) -> ConversationState:
        saved = state.model_copy(update={"version": state.version + 1, "updated_at": datetime.now(UTC)})
        keys = [self.state_key(state.key), self.inbox_key(state.key)]
        args: list[str | int] = [
            state.version,
            saved.version,
            saved.model_dump_json(),
            self._state_ttl,
            state.last_event_id,
        ]
        if not self._save_script(keys=keys, args=args):
            raise StoreError(
                f"conversation {state.key.id} was saved by another step meanwhile", retryable=True
            )
        return saved

    @_translated
    def append_event(self, key: ConversationKey, event: Event) -> str:
        inbox = self.inbox_key(key)
        with self._redis.pipeline() as pipe:
            pipe.xadd(inbox, {"e": EVENT_ADAPTER.dump_json(event)})
            pipe.expire(inbox, self._state_ttl)
            event_id, _ = pipe.execute()
        return event_id.decode() if isinstance(event_id, bytes) else str(event_id)

    @_translated
    def append_event_once(
        self, key: ConversationKey, event: Event, *, marker: str, ttl: int, then: StepWrites | None = None
    ) -> str | None:
        """`append_event`, unless `marker` is already set: sets it (for `ttl` seconds) atomically with it.

        With `then` (a step job, `RQJobQueue.step_writes`), the step is written by the same script, so
        an event is never stored without its step (nor a duplicate delivery given one). Returns the
        inbox entry id, or None when the marker was set already (a duplicate delivery).
        """
        keys = [self.inbox_key(key), marker]
        args: list[EncodableT] = [EVENT_ADAPTER.dump_json(event), ttl, self._state_ttl]
        if then is None:
            event_id = self._append_once_script(keys=keys, args=args)
        else:
            event_id = self._submit_once_script(keys=keys + then.keys, args=args + then.args)
        return None if event_id is None else _text(event_id)

    @_translated
    def exists(self, key: ConversationKey) -> bool:
        """Whether the conversation has a saved state (without reading it)."""
        return bool(self._redis.exists(self.state_key(key)))

    @_translated
    def events_after(self, key: ConversationKey, event_id: str) -> list[tuple[str, Event]]:
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            self._redis.xrange(self.inbox_key(key), f"({event_id}", "+"),
        )
        return [(_text(entry_id), EVENT_ADAPTER.validate_json(fields[b"e"])) for entry_id, fields in entries]

    @_translated
    def put_artifacts(self, run_id: str, artifacts: Sequence[Artifact]) -> None:
        name = f"{self._prefix}:art:{run_id}"
        with self._redis.pipeline() as pipe:
            pipe.hset(name, mapping={artifact.name: artifact.content for artifact in artifacts})
            pipe.expire(name, self._artifact_ttl)
            pipe.execute()

    @_translated
    def get_artifacts(self, run_id: str) -> list[Artifact]:
        stored = cast(dict[bytes, bytes], self._redis.hgetall(f"{self._prefix}:art:{run_id}"))
        return [_artifact(_text(name), content) for name, content in sorted(stored.items())]

    @_translated
    def delete(self, key: ConversationKey) -> None:
        self._redis.delete(self.state_key(key), self.inbox_key(key))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _artifact(name: str, content: bytes) -> Artifact:
    mime_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Artifact(name=name, mime_type=mime_type, size=len(content), content=content)
