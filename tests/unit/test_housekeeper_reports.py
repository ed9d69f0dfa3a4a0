"""A worker's housekeeping says once when its engine goes down or comes back, and reports every round."""

from __future__ import annotations

import logging

import pytest

from agentbot.sandbox.docker import DockerExecutor
from agentbot.sandbox.docker.housekeeping import Housekeeper
from tests.sandbox.docker_fixtures import dead_sockets

DEAD = "unix:///nonexistent/agentbot-housekeeping/docker.sock"


@pytest.mark.parametrize(("at_start", "lines"), [(True, 1), (False, 0), (None, 0)])
def test_an_engine_going_down_is_said_once_and_reported_every_round(
    caplog: pytest.LogCaptureFixture, at_start: bool | None, lines: int
) -> None:
    reports: list[bool] = []
    keeper = Housekeeper(DockerExecutor(base_url=DEAD), every=1, name="b", report=reports.append, up=at_start)
    with caplog.at_level(logging.WARNING), dead_sockets():
        for _ in range(3):
            keeper.tick()
    said = [r.getMessage() for r in caplog.records if "Docker engine b is not reachable" in r.getMessage()]
    assert len(said) == lines  # down at start was said by the worker's start checks already
    assert reports == [False, False, False]
    assert not any("sandbox housekeeping" in r.getMessage() for r in caplog.records)  # no line per round
