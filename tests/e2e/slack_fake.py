"""The fake Slack Web API as a process, plus control routes so an end-to-end test can arrange it.

    python -m tests.e2e.slack_fake --port 0

prints `READY http://127.0.0.1:PORT/api/` like `python -m tests.fakes.slack_server`, serves the same
Web API and `GET /_calls`, and adds, for the test driving it from another process:

- `POST /_control/fail` `{"method", "status", "times", "retry_after", "error", "after"}`: `FakeSlack.fail`
- `POST /_control/streaming` `{"enabled": false}`: `chat.startStream` refused (`FakeSlack.set_streaming`)
- `POST /_control/file` `{"file_id", "content_b64", "mime_type"}` → `{"url"}`: `FakeSlack.add_file`
- `POST /_control/message` `{"channel", "user", "text", "thread_ts", "extra"}` → `{"ts"}`
- `POST /_control/messages` `{"channel", "thread_ts", "messages": [[user, text], ...]}`: many at once
- `GET /_control/thread?channel=C&ts=T`: the thread's messages (metadata included), root first
- `GET /_control/uploads`: completed uploads, each file's bytes as `content_b64`
- `GET /_control/home?user=U`: the Home tab last published for that person (`null` if none)
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import threading
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.slack_server import TOKEN, FakeSlack, _SlackHandler

CONTROL = "/_control/"


class ControlledSlackHandler(_SlackHandler):
    """The fake's handler with the `/_control/` routes in front of it."""

    def do_GET(self) -> None:  # noqa: N802  # http.server's naming
        path, _, query = self.path.partition("?")
        if not path.startswith(CONTROL):
            super().do_GET()
            return
        args = dict(parse_qsl(query))
        route = path.removeprefix(CONTROL)
        if route == "thread":
            self.send_json(200, self.fake.thread(args.get("channel", ""), args.get("ts", "")))
        elif route == "uploads":
            self.send_json(200, [_encoded(upload) for upload in self.fake.uploaded()])
        elif route == "home":
            self.send_json(200, self.fake.home(args.get("user", "")))
        else:
            self.send_json(404, {"ok": False, "error": "no_such_control"})

    def do_POST(self) -> None:  # noqa: N802  # http.server's naming
        path = self.path.partition("?")[0]
        if not path.startswith(CONTROL):
            super().do_POST()
            return
        data = json.loads(self.read_body() or b"{}")
        route = path.removeprefix(CONTROL)
        if route == "fail":
            self.fake.fail(
                str(data["method"]),
                status=int(data.get("status", 500)),
                times=int(data.get("times", 1)),
                retry_after=data.get("retry_after"),
                error=data.get("error"),
                after=bool(data.get("after", False)),
            )
            self.send_json(200, {"ok": True})
        elif route == "messages":
            for user, text in data["messages"]:
                self.fake.add_message(
                    str(data["channel"]), user=str(user), text=str(text), thread_ts=data["thread_ts"]
                )
            self.send_json(200, {"ok": True})
        elif route == "streaming":
            self.fake.set_streaming(bool(data.get("enabled", True)))
            self.send_json(200, {"ok": True})
        elif route == "file":
            content = base64.b64decode(str(data["content_b64"]))
            url = self.fake.add_file(
                str(data["file_id"]), content, mime_type=str(data.get("mime_type", "text/csv"))
            )
            self.send_json(200, {"ok": True, "url": url})
        elif route == "message":
            extra: dict[str, Any] = data.get("extra") or {}
            ts = self.fake.add_message(
                str(data["channel"]),
                user=str(data["user"]),
                text=str(data["text"]),
                thread_ts=data.get("thread_ts"),
                **extra,
            )
            self.send_json(200, {"ok": True, "ts": ts})
        else:
            self.send_json(404, {"ok": False, "error": "no_such_control"})


def _encoded(upload: dict[str, Any]) -> dict[str, Any]:
    files = [
        {
            **{k: v for k, v in f.items() if k != "content"},
            "content_b64": base64.b64encode(f["content"]).decode(),
        }
        for f in upload["files"]
    ]
    return {**upload, "files": files}


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, printing `READY <api url>` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=TOKEN)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    fake = FakeSlack(port=args.port, token=args.token)
    fake.httpd.RequestHandlerClass = type(
        "BoundControlledSlackHandler", (ControlledSlackHandler,), {"state": fake.state, "fake": fake}
    )
    with fake:
        print(f"READY {fake.api_url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
