"""`agentbot doctor`'s table and exit code, and which checks each process runs."""

from __future__ import annotations

import pytest

from agentbot.doctor import Check, Status, doctor_code, render_table


def test_table_aligns_names_and_shows_status_first() -> None:
    table = render_table(
        [
            Check("redis", Status.OK, "127.0.0.1:6379 answers"),
            Check("sandbox image", Status.FAIL, "gone: fix"),
        ]
    )
    assert table.splitlines() == [
        "status  check          detail",
        "ok      redis          127.0.0.1:6379 answers",
        "FAIL    sandbox image  gone: fix",
    ]


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        pytest.param([Status.OK, Status.SKIP], 0, id="ok_and_skipped"),
        pytest.param([Status.OK, Status.WARN], 1, id="unreachable_counts_for_the_doctor"),
        pytest.param([Status.FAIL], 1, id="failed"),
        pytest.param([], 0, id="nothing_checked"),
    ],
)
def test_doctor_fails_on_anything_not_ok(statuses: list[Status], code: int) -> None:
    assert doctor_code([Check("x", status, "") for status in statuses]) == code
