"""A `ChatPlatform` fake that records posts in Redis, so tests can watch worker processes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis

from agentbot.conversation.code import Artifact
from agentbot.conversation.events import FileRef
from agentbot.conversation.ports import Activity
from agentbot.conversation.posts import Post
from agentbot.conversation.state import ConversationKey
from agentbot.errors import PlatformError


class RecordingPlatform:
    """Appends every call as JSON to the Redis list `<prefix>:calls`; files to download come from a dict.

    Like a workspace without AI features it shows no team plans (a plan post returns no message id,
    so the agents' messages are posted one by one), unless made with `plans=True`.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "test:platform",
        files: dict[str, bytes] | None = None,
        plans: bool = False,
    ):
        self._redis = client
        self._prefix = prefix
        self._files = files or {}
        self._plans = plans

    def post(self, key: ConversationKey, post: Post, *, effect_id: str) -> str:
        message_id = f"m{self._redis.incr(f'{self._prefix}:seq')}"
        self._redis.hset(f"{self._prefix}:effects", effect_id, message_id)
        if post.kind == "plan" and not self._plans:
            message_id = ""
        self._record(
            "post", key, post=post.model_dump(mode="json"), effect_id=effect_id, message_id=message_id
        )
        return message_id

    def find_posted(self, key: ConversationKey, effect_id: str) -> str | None:
        found = self._redis.hget(f"{self._prefix}:effects", effect_id)
        return found.decode() if isinstance(found, bytes) else None

    def update(self, key: ConversationKey, message_id: str, post: Post) -> None:
        self._record("update", key, post=post.model_dump(mode="json"), message_id=message_id)

    def upload(
        self, key: ConversationKey, artifacts: Sequence[Artifact], *, run_id: str, resume: bool = False
    ) -> None:
        names, sizes = [a.name for a in artifacts], [a.size for a in artifacts]
        self._record("upload", key, names=names, sizes=sizes, run_id=run_id, resume=resume)

    def download(self, file: FileRef) -> bytes:
        if file.url not in self._files:
            raise PlatformError(f"no file {file.url}", user_message="the file is gone.")
        return self._files[file.url]

    def set_status(self, key: ConversationKey, text: str, *, activity: Activity = "") -> None:
        """Status is transient; not recorded."""

    def _record(self, method: str, key: ConversationKey, **fields: Any) -> None:
        self._redis.rpush(f"{self._prefix}:calls", json.dumps({"method": method, "thread": key.id, **fields}))

    def calls(self, thread: str | None = None) -> list[dict[str, Any]]:
        raw = self._redis.lrange(f"{self._prefix}:calls", 0, -1)
        calls = [json.loads(item) for item in raw]
        return [call for call in calls if thread is None or call["thread"] == thread]

    def posts(self, thread: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        posts = [call["post"] for call in self.calls(thread) if call["method"] == "post"]
        return [post for post in posts if kind is None or post["kind"] == kind]
