"""What a run printed, capped in bytes while it streams, and the text an executor returns for it.

Shared by the executors so the assistant reads the same words from each: the output, then a line for
truncation, one per file left out, and `Timeout: ...` last (AutoGen ends a timed-out output so too).
"""

from __future__ import annotations

from collections.abc import Sequence


class CappedOutput:
    """Merged stdout and stderr, keeping at most `limit` bytes however much the code prints."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        """Keep what fits; past the cap a chunk is only counted as truncation (the reader keeps draining)."""
        room = self.limit - len(self.data)
        self.data += chunk[: max(room, 0)]
        self.truncated = self.truncated or len(chunk) > room

    def render(self, *, timed_out: bool, timeout: float, notes: Sequence[str] = ()) -> str:
        """The output text, followed by the lines about truncation, left-out files and a timeout."""
        text = self.data.decode("utf-8", errors="replace")
        lines = []
        if self.truncated:
            lines.append(f"[output truncated: the code printed more than {self.limit} bytes]")
        lines.extend(notes)
        if timed_out:
            lines.append(f"Timeout: the code ran longer than {timeout:g} s and was stopped.")
        if lines and text and not text.endswith("\n"):
            text += "\n"
        return text + "\n".join(lines)
