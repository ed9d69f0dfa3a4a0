"""One exec's streams: Docker's multiplexed frames read with caps, the wrapper's report, tars both ways."""

from __future__ import annotations

import io
import logging
import socket
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import docker

logger = logging.getLogger(__name__)

CHUNK = 65_536
CONTROL_SLACK = 2_000_000  # listing and tar headers around the artifacts in the wrapper's report
ARGUMENT_MAX = 100_000  # Linux caps one argument at 128 KiB (MAX_ARG_STRLEN)


class Sink(Protocol):
    def add(self, chunk: bytes) -> None: ...


@dataclass
class Capped:
    """Bytes kept up to `limit`; the rest is counted and dropped."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[: max(room, 0)]
        self.truncated = self.truncated or len(chunk) > room


@dataclass(frozen=True)
class Report:
    """What the wrapper said at the end of a run."""

    exit_code: int
    timed_out: bool
    changed: list[tuple[str, int]]
    files: dict[str, bytes]


@dataclass
class Exec:
    """The outcome of one exec: output, the wrapper's report, and whether the deadline passed."""

    output: Capped
    control: Capped
    exit_code: int
    deadline_passed: bool


def stream(
    api: docker.APIClient, exec_id: str, payload: bytes, deadline: float, *, output: Capped, control: Capped
) -> Exec:
    """Start the exec, send `payload`, then read its output until it ends or `deadline` passes."""
    sock = api.exec_start(exec_id, socket=True)
    raw: socket.socket = getattr(sock, "_sock", sock)
    try:
        raw.settimeout(max(deadline - time.monotonic(), 0.001))
        if payload:
            raw.sendall(payload)
            raw.shutdown(socket.SHUT_WR)
        passed = pump(raw, deadline, output, control)
    except TimeoutError:
        passed = True
    finally:
        sock.close()
        raw.close()
    return Exec(output=output, control=control, exit_code=-1, deadline_passed=passed)


def pump(
    raw: socket.socket,
    deadline: float,
    output: Sink,
    control: Sink,
    finished: Callable[[], bool] = lambda: False,
) -> bool:
    """Read Docker's multiplexed frames (8-byte header: stream, 0, 0, 0, size) until the stream ends
    or `finished()` says so.

    Returns True when `deadline` passes first. Past their caps the streams are drained, not kept.
    """
    pending = bytearray()
    sinks: dict[int, Sink] = {1: output, 2: control}
    while not finished():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        raw.settimeout(remaining)
        chunk = raw.recv(CHUNK)
        if not chunk:
            return False
        pending += chunk
        _deliver(pending, sinks)
    return False


def _deliver(pending: bytearray, sinks: dict[int, Sink]) -> None:
    """Move every whole frame at the start of `pending` into its sink (stdin's and unknown ones dropped)."""
    while len(pending) >= 8:
        size = int.from_bytes(pending[4:8], "big")
        if len(pending) < 8 + size:
            return
        sink = sinks.get(pending[0])
        if sink is not None:
            sink.add(bytes(pending[8 : 8 + size]))
        del pending[: 8 + size]


# -- a run through the broker (supervisor.py) -----------------------------------------------------


@dataclass
class Marked:
    """The code's output up to the broker's end marker; the marker and anything after it are dropped.

    The tail that could be the start of the marker is held back until it is known not to be.
    """

    output: Capped
    marker: bytes
    held: bytearray = field(default_factory=bytearray)
    seen: bool = False

    def add(self, chunk: bytes) -> None:
        if self.seen:
            return
        self.held += chunk
        at = self.held.find(self.marker)
        if at >= 0:
            self.output.add(bytes(self.held[:at]))
            self.held.clear()
            self.seen = True
            return
        keep = len(self.marker) - 1
        if len(self.held) > keep:
            self.output.add(bytes(self.held[:-keep]))
            del self.held[:-keep]

    def flush(self) -> None:
        """No marker came (the deadline passed): what was held back is output too."""
        if not self.seen:
            self.output.add(bytes(self.held))
            self.held.clear()


@dataclass
class Answer:
    """The broker's answer on stderr: `AGENTBOT-BROKER <nonce> <status> <size>\\n` and `size` bytes."""

    nonce: str
    report: Capped
    status: str = ""
    size: int = -1
    received: int = 0
    pending: bytearray = field(default_factory=bytearray)
    skipping: int = 0  # bytes left of another request's report

    @property
    def done(self) -> bool:
        return 0 <= self.size <= self.received

    def add(self, chunk: bytes) -> None:
        if self.skipping:
            skipped = min(self.skipping, len(chunk))
            self.skipping -= skipped
            chunk = chunk[skipped:]
        if self.size < 0:
            self.pending += chunk
            header, newline, rest = bytes(self.pending).partition(b"\n")
            if not newline:
                return
            self.pending.clear()
            parts = header.decode(errors="replace").split()
            if len(parts) == 4 and parts[0] == "AGENTBOT-BROKER" and parts[3].isdigit():
                if parts[1] == self.nonce:
                    self.status, self.size = parts[2], int(parts[3])
                    chunk = rest
                else:  # the answer to a run a dead worker left behind: skip it and its report
                    self.skipping = int(parts[3])
                    self.add(rest)
                    return
            else:  # not an answer: skip the line
                self.add(rest)
                return
        room = self.size - self.received
        self.report.add(chunk[:room])
        self.received += min(len(chunk), room)


def converse(raw: socket.socket, message: bytes, deadline: float, *, output: Marked, answer: Answer) -> bool:
    """Send `message` to the broker on an attached socket and read until its answer is complete.

    Returns True when `deadline` passes first. After a run, the answer counts as complete once the
    output's end marker has come too, as the two streams may arrive in either order.
    """

    def finished() -> bool:
        return answer.done and (answer.status == "none" or output.seen)

    try:
        raw.settimeout(max(deadline - time.monotonic(), 0.001))
        raw.sendall(b"\n" + message + b"\n")  # a newline first ends any line a dead worker left half-sent
        passed = pump(raw, deadline, output, answer, finished)
    except TimeoutError:
        passed = True
    output.flush()
    return passed


def parse_report(data: bytes) -> Report | None:
    """The wrapper's report: `AGENTBOT <exit> <timed out>`, `size\tname` records up to an empty one, a tar."""
    header, _, rest = data.partition(b"\n")
    parts = header.split()
    if len(parts) != 3 or parts[0] != b"AGENTBOT" or not all(p.isdigit() for p in parts[1:]):
        return None
    changed = []
    while rest and not rest.startswith(b"\0"):
        record, _, rest = rest.partition(b"\0")
        size, tab, name = record.partition(b"\t")
        if tab and size.isdigit():
            changed.append((name.decode(errors="replace"), int(size)))
    return Report(
        exit_code=int(parts[1]),
        timed_out=parts[2] == b"1",
        changed=changed,
        files=untar(rest[1:]),
    )


def untar(data: bytes) -> dict[str, bytes]:
    """The regular files of a tar by name; a malformed tar gives what was read before the fault."""
    files: dict[str, bytes] = {}
    if not data:
        return files
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                extracted = archive.extractfile(member) if member.isreg() else None
                if extracted is not None:
                    files[member.name] = extracted.read()
    except tarfile.TarError:
        logger.warning("the sandbox sent a malformed artifact archive")
    return files


def fits_argument(text: str) -> bool:
    """Whether `text` can go to the wrapper as an argument: bash strings cannot hold NUL."""
    return "\0" not in text and len(text.encode()) < ARGUMENT_MAX


def tar(contents: Sequence[bytes]) -> bytes:
    """A tar of `contents` named 0, 1, 2...: the wrapper places them under their real names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for index, content in enumerate(contents):
            info = tarfile.TarInfo(str(index))
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def render(output: Capped, timed_out: bool, timeout: float, notes: Sequence[str]) -> str:
    """What people see: the output, then a line each for truncation, the timeout and `notes`."""
    text = output.data.decode("utf-8", errors="replace")
    lines = []
    if output.truncated:
        lines.append(f"[output truncated: the code printed more than {output.limit} bytes]")
    if timed_out:
        lines.append(f"Timeout: the code ran longer than {timeout:g} s and was stopped.")
    lines.extend(notes)
    if lines and text and not text.endswith("\n"):
        text += "\n"
    return text + "\n".join(lines)
