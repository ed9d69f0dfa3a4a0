"""Which files a run created or changed, and how they become artifacts under a size cap (pure helpers).

Executors take a snapshot of the workspace before and after a run and diff them; the Docker executor
builds its snapshots from a tar listing, the local one with `snapshot(root)`. Hidden files and
`__pycache__` are left out: they are tooling residue, not results.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from agentbot.conversation.code import Artifact

Snapshot = dict[str, tuple[int, int]]
"""Relative POSIX path of each regular file -> (mtime in ns, size in bytes)."""

MAX_ARTIFACTS = 20  # more files than this from one run is a loop, not something to post in a thread

_MIME_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
    ".log": "text/plain",
    ".md": "text/markdown",
    ".json": "application/json",
    ".html": "text/html",
    ".py": "text/x-python",
    ".sh": "text/x-sh",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".parquet": "application/vnd.apache.parquet",
}


def is_result_file(name: str) -> bool:
    """False for hidden files and `__pycache__` contents, which are never returned as artifacts."""
    return not any(part.startswith(".") or part == "__pycache__" for part in PurePosixPath(name).parts)


def snapshot(root: Path) -> Snapshot:
    """The regular result files under `root` (symlinks are neither followed nor listed)."""
    found: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: never leave root
        dirnames[:] = [name for name in dirnames if is_result_file(name)]  # skip .local, .cache, ...
        for filename in filenames:
            info = os.lstat(os.path.join(dirpath, filename))
            if stat.S_ISREG(info.st_mode):
                name = Path(dirpath, filename).relative_to(root).as_posix()
                found[name] = (info.st_mtime_ns, info.st_size)
    return found


def changed_files(before: Mapping[str, tuple[int, int]], after: Mapping[str, tuple[int, int]]) -> list[str]:
    """Result files that are new in `after` or differ from `before`, sorted; deleted files are ignored."""
    return sorted(name for name, seen in after.items() if before.get(name) != seen and is_result_file(name))


def guess_mime(name: str) -> str:
    """The MIME type for a file name, `application/octet-stream` when unknown."""
    suffix = PurePosixPath(name).suffix.lower()
    return _MIME_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def make_artifact(name: str, content: bytes) -> Artifact:
    return Artifact(name=name, mime_type=guess_mime(name), size=len(content), content=content)


def left_out(name: str, size: int, reason: str) -> str:
    """The line added to the output for a file that is not returned."""
    return f"[agentbot] {name} ({_human(size)}) was not returned: {reason}."


def select(sizes: Iterable[tuple[str, int]], limit: int) -> tuple[list[str], list[str]]:
    """Names to return within `limit` bytes in total and `MAX_ARTIFACTS` files, and notes for the rest.

    Images go first (they are what people look for in a thread), then the rest in the given order.
    """
    chosen: list[str] = []
    notes: list[str] = []
    budget = limit
    for name, size in sorted(sizes, key=lambda item: not guess_mime(item[0]).startswith("image/")):
        if len(chosen) >= MAX_ARTIFACTS:
            notes.append(left_out(name, size, f"more than {MAX_ARTIFACTS} files changed"))
        elif size > budget:
            notes.append(left_out(name, size, f"over the {_human(limit)} artifact limit"))
        else:
            chosen.append(name)
            budget -= size
    return chosen, notes


def make_artifacts(root: Path, names: Iterable[str], limit: int) -> tuple[tuple[Artifact, ...], list[str]]:
    """Artifacts for the files `names` under `root` within `limit` bytes, and notes for those left out."""
    sizes = {name: _size(root / name) for name in names}
    chosen, notes = select(sizes.items(), limit)
    artifacts = []
    for name in chosen:
        content = _read_regular(root / name, sizes[name])
        if content is None:
            notes.append(left_out(name, sizes[name], "it changed while it was being read"))
        else:
            artifacts.append(make_artifact(name, content))
    return tuple(artifacts), notes


def _size(path: Path) -> int:
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _read_regular(path: Path, size: int) -> bytes | None:
    # O_NOFOLLOW and O_NONBLOCK: a file swapped for a symlink or a FIFO after the snapshot is not read.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        content = file.read(size + 1)
    return content if len(content) == size else None


def _human(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"
