"""The worker's side of a run through the broker, without an engine: the end marker, the answer, and a
whole conversation over a socket pair; the pure helpers of the pool and of supervisor.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from agentbot.sandbox.docker import supervisor
from agentbot.sandbox.docker.containers import (
    POOL_LABEL,
    WORKSPACE_LABEL,
    keeper_command,
    unclaimed,
    workspace_of,
)
from agentbot.sandbox.docker.stream import Answer, Capped, Marked, converse
from tests.unit.test_docker_stream import frame

MARKER = b"\nfeedbeef\n"


def marked(*chunks: bytes, limit: int = 1000) -> tuple[bytes, bool]:
    output = Marked(Capped(limit), MARKER)
    for chunk in chunks:
        output.add(chunk)
    output.flush()
    return bytes(output.output.data), output.seen


@pytest.mark.parametrize(
    ("chunks", "kept", "seen"),
    [
        ((b"1\n", MARKER), b"1\n", True),
        ((b"no newline at the end", MARKER), b"no newline at the end", True),
        ((b"split \nfee", b"dbeef\n"), b"split ", True),
        ((b"a", b"\n", b"f", b"e", b"e", b"dbeef", b"\n"), b"a", True),
        ((b"out", MARKER, b"late bytes of a dying process"), b"out", True),
        ((b"\nfeed but not the marker\n",), b"\nfeed but not the marker\n", False),
        ((b"",), b"", False),
    ],
)
def test_output_ends_at_the_brokers_marker(chunks: tuple[bytes, ...], kept: bytes, seen: bool) -> None:
    assert marked(*chunks) == (kept, seen)


def test_output_past_its_cap_is_still_scanned_for_the_marker() -> None:
    data, seen = marked(b"z" * 5000, MARKER, limit=10)
    assert (data, seen) == (b"z" * 10, True)


def answer(*chunks: bytes, nonce: str = "n1", limit: int = 100) -> Answer:
    parsed = Answer(nonce, Capped(limit))
    for chunk in chunks:
        parsed.add(chunk)
    return parsed


@pytest.mark.parametrize(
    ("chunks", "status", "report", "done"),
    [
        ((b"AGENTBOT-BROKER n1 ran 5\nhello",), "ran", b"hello", True),
        ((b"AGENTBOT-BRO", b"KER n1 ran 5\nhel", b"lo"), "ran", b"hello", True),
        ((b"AGENTBOT-BROKER n1 none 0\n",), "none", b"", True),
        ((b"AGENTBOT-BROKER n1 ran 5\nhel",), "ran", b"hel", False),
        ((b"noise\nAGENTBOT-BROKER n1 lost 0\n",), "lost", b"", True),
        ((b"AGENTBOT-BROKER other ran 2\nhi",), "", b"", False),  # never another request's answer
        # A dead worker's run answered first: its report (a tar ends in NULs, no newline) is skipped
        # by its size, in the same chunk as ours or in another.
        ((b"AGENTBOT-BROKER other ran 4\n\0\0\0\0AGENTBOT-BROKER n1 none 0\n",), "none", b"", True),
        ((b"AGENTBOT-BROKER other ran 4\n\0\0", b"\0\0", b"AGENTBOT-BROKER n1 none 0\n"), "none", b"", True),
        ((b"AGENTBOT-BROKER other lost 0\nAGENTBOT-BROKER n1 ran 2\nhi",), "ran", b"hi", True),
        ((b"AGENTBOT-BROKER other ran 9\nAGENTBOT-BROKER n1 ran 2\nhi",), "", b"", False),
        ((b"AGENTBOT-BROKER n1 ran 2\nhi and more",), "ran", b"hi", True),
    ],
)
def test_the_brokers_answer_is_parsed(
    chunks: tuple[bytes, ...], status: str, report: bytes, done: bool
) -> None:
    parsed = answer(*chunks)
    assert (parsed.status, bytes(parsed.report.data), parsed.done) == (status, report, done)


def test_a_report_over_the_cap_is_truncated() -> None:
    parsed = answer(b"AGENTBOT-BROKER n1 ran 500\n" + b"r" * 500, limit=100)
    assert parsed.done and parsed.report.truncated and len(parsed.report.data) == 100


def test_a_conversation_sends_the_request_and_waits_for_both_streams() -> None:
    ours, theirs = socket.socketpair()
    received = bytearray()

    def broker() -> None:
        while not received.endswith(b"}\n"):
            received.extend(theirs.recv(4096))
        theirs.sendall(frame(2, b"AGENTBOT-BROKER n1 ran 3\nrep"))  # the answer before the output
        time.sleep(0.05)
        theirs.sendall(frame(1, b"printed" + MARKER))

    thread = threading.Thread(target=broker)
    thread.start()
    output, parsed = Marked(Capped(100), MARKER), answer()
    try:
        passed = converse(ours, b'{"op": "run"}', time.monotonic() + 5, output=output, answer=parsed)
    finally:
        thread.join()
        ours.close()
        theirs.close()
    assert not passed
    assert bytes(received) == b'\n{"op": "run"}\n'
    assert (bytes(output.output.data), bytes(parsed.report.data)) == (b"printed", b"rep")


def test_a_conversation_with_no_answer_passes_its_deadline() -> None:
    ours, theirs = socket.socketpair()
    try:
        began = time.monotonic()
        passed = converse(
            ours, b"{}", time.monotonic() + 0.2, output=Marked(Capped(9), MARKER), answer=answer()
        )
        assert passed and time.monotonic() - began < 2
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize(
    ("info", "workspace", "free"),
    [
        (
            {"Names": ["/agentbot-sbx-pool-1"], "Labels": {WORKSPACE_LABEL: "pool-1", POOL_LABEL: "1"}},
            "pool-1",
            True,
        ),
        (
            {"Names": ["/agentbot-sbx-T1-C2"], "Labels": {WORKSPACE_LABEL: "pool-1", POOL_LABEL: "1"}},
            "T1-C2",
            False,
        ),
        ({"Names": ["/agentbot-sbx-pool-9"], "Labels": {WORKSPACE_LABEL: "pool-9"}}, "pool-9", False),
        (
            {"Names": ["/agentbot-retiring-abc-1"], "Labels": {WORKSPACE_LABEL: "ws", POOL_LABEL: "1"}},
            "ws",
            False,
        ),
    ],
    ids=["unclaimed", "claimed", "a conversation named pool-*", "retiring"],
)
def test_pool_containers_are_told_apart_by_name_and_label(
    info: dict[str, object], workspace: str, free: bool
) -> None:
    assert (workspace_of(info), unclaimed(info)) == (workspace, free)


def test_the_broker_is_the_keeper_and_reads_nothing_from_the_workspace() -> None:
    assert keeper_command(60, relay=False) == [
        "python3",
        "-I",
        "-S",
        "/opt/agentbot/supervisor.py",
        "broker",
        "60",
    ]
    assert keeper_command(60, relay=True)[2].endswith(
        "& exec python3 -I -S /opt/agentbot/supervisor.py broker 60"
    )


@pytest.mark.parametrize(("value", "code"), [(None, 0), (3, 3), (256 + 2, 2), (True, 1), ("message", 1)])
def test_system_exit_gives_the_status_python_does(value: object, code: int) -> None:
    assert supervisor.exit_code(SystemExit(value)) == code


def test_module_names_are_what_an_import_could_find(tmp_path: Path) -> None:
    for name in ["numpy.py", "ext.cpython-311-x86_64-linux-gnu.so", "data.csv", "x.pth", "chart.png"]:
        (tmp_path / name).write_text("")
    for directory in ["pandas", "pandas-2.0.dist-info", ".local"]:
        (tmp_path / directory).mkdir()
    assert supervisor.module_names(str(tmp_path)) == {"numpy", "ext", "x.pth", "pandas"}
    assert supervisor.module_names(str(tmp_path / "missing")) == set()


def test_the_wire_format_is_ascii_so_dockers_detach_keys_never_occur() -> None:
    line = json.dumps({"code": "print('\x10\x11 é')"}).encode()  # ctrl-p ctrl-q: Docker's detach keys
    assert line.isascii() and b"\x10" not in line and b"\n" not in line
