"""Table tests for the artifact helpers: diffing snapshots, MIME types and the size and count caps."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentbot.sandbox.artifacts import (
    MAX_ARTIFACTS,
    changed_files,
    guess_mime,
    make_artifacts,
    select,
    snapshot,
)


def test_changed_files_are_new_or_different_and_never_deleted_or_hidden() -> None:
    before = {"same.txt": (1, 1), "edited.txt": (1, 1), "gone.txt": (1, 1)}
    after = {
        "same.txt": (1, 1),
        "edited.txt": (2, 1),
        "new.csv": (3, 3),
        ".hidden": (1, 1),
        "__pycache__/m.pyc": (1, 1),
    }
    assert changed_files(before, after) == ["edited.txt", "new.csv"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("figure_1.png", "image/png"),
        ("PHOTO.JPG", "image/jpeg"),
        ("data/table.csv", "text/csv"),
        ("report.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("blob", "application/octet-stream"),
    ],
)
def test_guess_mime(name: str, expected: str) -> None:
    assert guess_mime(name) == expected


def test_select_prefers_images_and_names_what_it_leaves_out() -> None:
    chosen, notes = select([("big.csv", 900), ("chart.png", 500), ("small.txt", 100)], limit=700)
    assert chosen == ["chart.png", "small.txt"]
    assert len(notes) == 1
    assert "big.csv" in notes[0]


def test_select_caps_the_number_of_files() -> None:
    chosen, notes = select([(f"f{i}.txt", 1) for i in range(MAX_ARTIFACTS + 3)], limit=10_000)
    assert len(chosen) == MAX_ARTIFACTS
    assert len(notes) == 3


def test_snapshot_lists_regular_files_and_skips_symlinks(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("abc")
    (tmp_path / "link").symlink_to("/etc/hostname")
    (tmp_path / "dirlink").symlink_to("/etc")
    assert list(snapshot(tmp_path)) == ["sub/a.txt"]
    assert snapshot(tmp_path)["sub/a.txt"][1] == 3


def test_make_artifacts_reads_contents(tmp_path: Path) -> None:
    (tmp_path / "out.csv").write_bytes(b"a,b\n")
    artifacts, notes = make_artifacts(tmp_path, ["out.csv"], limit=100)
    assert [(a.name, a.mime_type, a.content) for a in artifacts] == [("out.csv", "text/csv", b"a,b\n")]
    assert notes == []
