"""The Docker executor's pure stream parts: frames, caps, the wrapper's report, tars and the rendered text."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from agentbot.sandbox.docker.stream import Capped, fits_argument, parse_report, pump, render, tar, untar


def frame(stream: int, data: bytes) -> bytes:
    """One frame of Docker's multiplexed stream: stream id, three zero bytes, the size, the data."""
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(
    ("chunks", "limit", "kept", "truncated"),
    [
        ([b"abc"], 5, b"abc", False),
        ([b"abc", b"de"], 5, b"abcde", False),
        ([b"abc", b"def"], 5, b"abcde", True),
        ([b"abcdef", b"g"], 3, b"abc", True),
        ([b""], 0, b"", False),
        ([b"a"], 0, b"", True),
    ],
)
def test_capped_keeps_at_most_its_limit(
    chunks: list[bytes], limit: int, kept: bytes, truncated: bool
) -> None:
    capped = Capped(limit)
    for chunk in chunks:
        capped.add(chunk)
    assert (bytes(capped.data), capped.truncated) == (kept, truncated)


def pumped(wire: bytes, *, output_limit: int = 100, control_limit: int = 100) -> tuple[Capped, Capped, bool]:
    """Send `wire` through a real socket pair in small pieces and pump it on the other end."""
    ours, theirs = socket.socketpair()
    output, control = Capped(output_limit), Capped(control_limit)

    def send() -> None:
        for start in range(0, len(wire), 3):  # frames split across reads
            theirs.sendall(wire[start : start + 3])
        theirs.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        passed = pump(ours, time.monotonic() + 5, output, control)
    finally:
        sender.join()
        ours.close()
    return output, control, passed


@pytest.mark.parametrize(
    ("wire", "output", "control"),
    [
        (b"", b"", b""),
        (frame(1, b"hello ") + frame(1, b"world"), b"hello world", b""),
        (frame(2, b"AGENTBOT 0 0\n") + frame(1, b"out"), b"out", b"AGENTBOT 0 0\n"),
        (frame(0, b"stdin echo") + frame(3, b"?") + frame(1, b"x"), b"x", b""),  # other streams dropped
        (frame(1, b"") + frame(1, b"y"), b"y", b""),
    ],
)
def test_pump_sorts_frames_into_output_and_control(wire: bytes, output: bytes, control: bytes) -> None:
    got_output, got_control, passed = pumped(wire)
    assert (bytes(got_output.data), bytes(got_control.data), passed) == (output, control, False)


def test_pump_drains_past_the_caps_to_the_end_of_the_stream() -> None:
    output, control, passed = pumped(
        frame(1, b"x" * 5000) + frame(2, b"y" * 50), output_limit=10, control_limit=20
    )
    assert (bytes(output.data), output.truncated) == (b"x" * 10, True)
    assert (bytes(control.data), control.truncated) == (b"y" * 20, True)
    assert not passed


def test_pump_reports_a_passed_deadline_when_the_stream_does_not_end() -> None:
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(frame(1, b"partial"))
        began = time.monotonic()
        with pytest.raises(TimeoutError):  # `stream()` counts this as the deadline passing
            pump(ours, time.monotonic() + 0.2, Capped(100), Capped(100))
        assert time.monotonic() - began < 2
        assert pump(ours, time.monotonic() - 1, Capped(100), Capped(100))
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize(
    ("data", "exit_code", "timed_out", "changed"),
    [
        (b"AGENTBOT 0 0\n\0", 0, False, []),
        (b"AGENTBOT 137 1\n\0", 137, True, []),
        (b"AGENTBOT 1 0\n3\ta.txt\x0012\td/b.png\x00\0", 1, False, [("a.txt", 3), ("d/b.png", 12)]),
        (b"AGENTBOT 0 0\nbad record\x005\tok\x00\0", 0, False, [("ok", 5)]),
        (b"AGENTBOT 0 0\n2\t\xff.bin\x00\0", 0, False, [("\ufffd.bin", 2)]),
        (b"AGENTBOT 0 0\n", 0, False, []),
    ],
)
def test_report_is_parsed(
    data: bytes, exit_code: int, timed_out: bool, changed: list[tuple[str, int]]
) -> None:
    report = parse_report(data)
    assert report is not None
    assert (report.exit_code, report.timed_out, report.changed, report.files) == (
        exit_code,
        timed_out,
        changed,
        {},
    )


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage\n", b"AGENTBOT 0\n\0", b"AGENTBOT x 0\n\0", b"AGENTBOT 0 0 0\n\0", b"agentbot 0 0\n\0"],
)
def test_anything_but_a_report_is_none(data: bytes) -> None:
    assert parse_report(data) is None


def test_report_carries_the_files_of_its_tar() -> None:
    archive = tar([b"one", b"\x89PNG"])
    report = parse_report(b"AGENTBOT 0 0\n3\t0\x004\t1\x00\0" + archive)
    assert report is not None
    assert report.files == {"0": b"one", "1": b"\x89PNG"}


@pytest.mark.parametrize(
    ("data", "files"),
    [
        (b"", {}),
        (tar([]), {}),
        (tar([b"a", b"", b"c" * 70_000]), {"0": b"a", "1": b"", "2": b"c" * 70_000}),
        (b"not a tar at all" * 64, {}),
    ],
)
def test_untar_reads_what_tar_wrote(data: bytes, files: dict[str, bytes]) -> None:
    assert untar(data) == files


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        ("print(1)", True),
        ("x" * 99_999, True),
        ("x" * 100_000, False),
        ("é" * 50_000, False),
        ("a\0b", False),
    ],
)
def test_code_goes_as_an_argument_only_when_bash_can_hold_it(text: str, fits: bool) -> None:
    assert fits_argument(text) is fits


def capped(data: bytes, limit: int = 100) -> Capped:
    output = Capped(limit)
    output.add(data)
    return output


@pytest.mark.parametrize(
    ("output", "timed_out", "notes", "text"),
    [
        (capped(b"ok\n"), False, [], "ok\n"),
        (capped(b"ok"), False, [], "ok"),
        (capped(b""), False, ["[agentbot] a note"], "[agentbot] a note"),
        (capped(b"ok"), False, ["n1", "n2"], "ok\nn1\nn2"),
        (capped(b"abcdef", 3), False, [], "abc\n[output truncated: the code printed more than 3 bytes]"),
        (capped(b"\xff"), False, [], "\ufffd"),
        (
            capped(b"x\n"),
            True,
            ["n"],
            "x\nTimeout: the code ran longer than 1.5 s and was stopped.\nn",
        ),
    ],
)
def test_render(output: Capped, timed_out: bool, notes: list[str], text: str) -> None:
    assert render(output, timed_out, 1.5, notes) == text
