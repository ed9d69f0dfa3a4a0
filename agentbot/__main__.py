"""`python -m agentbot` is the `agentbot` command."""

import sys

from agentbot.cli import main

sys.exit(main())
