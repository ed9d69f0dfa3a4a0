"""The capped output buffer and the text executors return from it."""

from __future__ import annotations

from agentbot.sandbox.output import CappedOutput


def test_output_keeps_at_most_the_limit_and_says_so() -> None:
    output = CappedOutput(limit=5)
    for chunk in (b"abc", b"defgh", b"ijk"):
        output.add(chunk)
    assert bytes(output.data) == b"abcde"
    assert output.truncated
    assert (
        output.render(timed_out=False, timeout=1)
        == "abcde\n[output truncated: the code printed more than 5 bytes]"
    )


def test_output_under_the_limit_is_returned_as_is() -> None:
    output = CappedOutput(limit=10)
    output.add(b"ok\n")
    assert not output.truncated
    assert output.render(timed_out=False, timeout=1) == "ok\n"


def test_timeout_line_comes_last_after_notes() -> None:
    output = CappedOutput(limit=10)
    output.add("é".encode())
    text = output.render(timed_out=True, timeout=1.5, notes=["[agentbot] big.bin was not returned"])
    assert text.splitlines() == [
        "é",
        "[agentbot] big.bin was not returned",
        "Timeout: the code ran longer than 1.5 s and was stopped.",
    ]
