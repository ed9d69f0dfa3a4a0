"""A worker process for tests: the real RQ worker and runtime, with the recording chat platform."""

from __future__ import annotations

import os

from agentbot import runtime
from agentbot.settings import load_settings
from agentbot.workers import run_worker
from tests.fakes.platform import RecordingPlatform


def main() -> None:
    settings = load_settings()
    client, _ = runtime.connect_redis(settings)
    rt = runtime.build(settings, platform=RecordingPlatform(client), queue_name=os.environ["TEST_QUEUE"])
    runtime.install(rt)
    if os.environ.get("TEST_TOOLS") == "1":
        rt.tools.start()  # as `agentbot worker` does: one tool host in the parent, for every horse
    try:
        run_worker(rt, burst=os.environ.get("TEST_BURST") == "1")
    finally:
        rt.tools.close()


if __name__ == "__main__":
    main()
