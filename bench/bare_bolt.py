"""The reference for `bench.slack_ack`: a bare Bolt app whose listeners only ack, as a WSGI app for gunicorn.

    BENCH_SIGNING_SECRET=... BENCH_SLACK_API_URL=... gunicorn -w 2 -k gthread --threads 25 bench.bare_bolt:api

It verifies signatures and authorizes like any Bolt app (one `auth.test` per process, at the fake Slack),
then acks `app_mention` events and button clicks and does nothing else.
"""

from __future__ import annotations

import os
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

app = App(
    client=WebClient(token="xoxb-test-token", base_url=os.environ["BENCH_SLACK_API_URL"]),
    signing_secret=os.environ["BENCH_SIGNING_SECRET"],
    token_verification_enabled=False,
)


@app.event("app_mention")
def on_mention(ack: Any) -> None:
    ack()


@app.action("run_code")
def on_click(ack: Any) -> None:
    ack()


api = SlackRequestHandler(app)
