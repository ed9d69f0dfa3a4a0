"""The Slack bridge: payloads in (`parse`), Block Kit out (`render`), Web API (`platform`), Bolt (`app`)."""
