"""Conversation state, inbox and run artifacts in Redis (the `ConversationStore` port).

Keys, all under `agentbot:` and all expiring after the conversation has been idle for `state_ttl`:
    conv:{id}   hash  v = version, s = state JSON
    inbox:{id}  stream of events (JSON); entries up to the last applied one are trimmed on save
    art:{run}   hash  file name -> bytes (expires after `artifact_ttl`)
    people:{team}:{user}  sorted set of the conversation ids a person started or approves, by start
                time (the newest `PEOPLE_INDEX` kept): what their Home tab lists

`RedisSlackStore` keeps the Slack layer's own keys under `agentbot:slack:` (delivery markers, user names,
message edit pacing; see `agentbot.slack.store`).
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
PEOPLE_INDEX = 200  # conversations remembered per person for the Home tab
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
        saved = state.evolve(version=state.version + 1, updated_at=datetime.now(UTC))
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
        if state.version == 0 and state.parent is None:  # a new conversation people can see
            self._index_people(saved)
        return saved

    def people_key(self, team_id: str, user_id: str) -> str:
        return f"{self._prefix}:people:{team_id}:{user_id}"

    def _index_people(self, state: ConversationState) -> None:
        """Remember the conversation under its starter and its approvers (their Home tabs list it)."""
        score = state.created_at.timestamp()
        with self._redis.pipeline() as pipe:
            for user_id in dict.fromkeys((state.starter_id, *state.policy.approvers)):
                name = self.people_key(state.key.team_id, user_id)
                pipe.zadd(name, {state.key.id: score})
                pipe.zremrangebyrank(name, 0, -PEOPLE_INDEX - 1)
                pipe.expire(name, self._state_ttl)
            pipe.execute()

    @_translated
    def conversations_of(self, team_id: str, user_id: str, *, limit: int = 50) -> list[ConversationState]:
        """The newest conversations `user_id` started or approves in the workspace, newest first.

        Ids whose conversation has expired are dropped from the index on the way.
        """
        name = self.people_key(team_id, user_id)
        ids = [_text(raw) for raw in cast(list[bytes], self._redis.zrevrange(name, 0, limit - 1))]
        keys = [_key_of(conversation_id) for conversation_id in ids]
        with self._redis.pipeline() as pipe:
            for key in keys:
                pipe.hget(self.state_key(key), "s")
            raws = cast(list[bytes | None], pipe.execute())
        gone = [conversation_id for conversation_id, raw in zip(ids, raws, strict=True) if raw is None]
        if gone:
            self._redis.zrem(name, *gone)
        return [ConversationState.model_validate_json(raw) for raw in raws if raw is not None]

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


def _key_of(conversation_id: str) -> ConversationKey:
    """A conversation id (`ConversationKey.id`) back as its key: ids have no `:` inside their parts."""
    team_id, channel_id, thread_ts = conversation_id.split(":", 2)
    return ConversationKey(team_id=team_id, channel_id=channel_id, thread_ts=thread_ts)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _artifact(name: str, content: bytes) -> Artifact:
    mime_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Artifact(name=name, mime_type=mime_type, size=len(content), content=content)


class RedisSlackStore:
    """The Slack layer's `SlackStore` on Redis, under `agentbot:slack:`, shared by all processes."""

    def __init__(self, client: redis.Redis, *, prefix: str = "agentbot:slack") -> None:
        self._redis = client
        self._prefix = prefix

    @_translated
    def claim(self, name: str, ttl: float) -> bool:
        return bool(self._redis.set(self._key(name), "1", nx=True, px=_ms(ttl)))

    @_translated
    def release(self, name: str) -> None:
        self._redis.delete(self._key(name))

    @_translated
    def remaining(self, name: str) -> float:
        left = int(self._redis.pttl(self._key(name)))
        return max(left, 0) / 1000

    @_translated
    def get(self, name: str) -> str | None:
        value = self._redis.get(self._key(name))
        return None if value is None else _text(value)

    @_translated
    def put(self, name: str, value: str, ttl: float) -> None:
        self._redis.set(self._key(name), value, px=_ms(ttl))

    def _key(self, name: str) -> str:
        return f"{self._prefix}:{name}"


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)
