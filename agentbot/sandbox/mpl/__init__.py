"""The matplotlib backend the sandboxes set, so that `plt.show()` leaves PNG files in the workspace.

Put `BACKEND_DIR` on `PYTHONPATH` and set `MPLBACKEND` to `BACKEND`; the module imports only matplotlib,
so it runs in the sandbox image where agentbot is not installed.
"""

from __future__ import annotations

from pathlib import Path

BACKEND_DIR = Path(__file__).resolve().parent
BACKEND = "module://agentbot_backend"
