"""`python -m worker` is `agentbot worker`: the Procfile's worker process."""

import sys

from agentbot.cli import main

sys.exit(main(["worker", *sys.argv[1:]]))
