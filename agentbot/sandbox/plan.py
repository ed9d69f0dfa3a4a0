"""Turns code blocks into the files to write and the commands to run, AutoGen 0.2 style (pure).

A block whose first line is `# filename: x.py` is saved under that name in the workspace; any other
block gets a generated name `tmp_code_<hash>.py` / `.sh`. Python runs as `python <file>` and shell as
`sh <file>` (POSIX sh, as AutoGen 0.2's executors do); an executor may map `python` to a concrete
interpreter. Names are checked here to stay inside the workspace (no absolute paths, no `..`); a
symlink already in the workspace that points outside is the executor's to refuse when it writes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from agentbot.conversation.code import CodeBlock, Language

_FILENAME_LINE = re.compile(r"^\s*#\s*filename:\s*(?P<name>\S.*?)\s*$", re.IGNORECASE)  # as codeblocks.py
_EXTENSIONS: dict[Language, str] = {"python": "py", "sh": "sh"}
_COMMANDS: dict[Language, str] = {"python": "python", "sh": "sh"}
_MAX_NAME_BYTES = 1024
_MAX_PART_BYTES = 255  # NAME_MAX on Linux filesystems


class PlanError(ValueError):
    """A block cannot be run as asked: its filename would leave the workspace or is malformed."""


@dataclass(frozen=True)
class Step:
    """One file to write into the workspace, then the command that runs it there."""

    filename: str
    content: str
    argv: tuple[str, ...]


def plan_run(blocks: Sequence[CodeBlock]) -> list[Step]:
    """The steps for `blocks`, in order; raises `PlanError` (before anything runs) on a bad filename."""
    return [_step(block) for block in blocks]


def safe_filename(name: str) -> str:
    """`name` normalized to a relative POSIX path inside the workspace, or `PlanError` saying why not."""
    name = name.strip()
    if not name:
        raise PlanError("empty filename")
    if any(ord(char) < 32 or char == "\x7f" for char in name):
        raise PlanError(f"filename {name!r} contains control characters")
    if "\\" in name:
        raise PlanError(f"filename {name!r} contains a backslash")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise PlanError(f"filename {name!r} is absolute; use a name relative to the workspace")
    if ".." in path.parts:
        raise PlanError(f"filename {name!r} leaves the workspace ('..')")
    parts = [part for part in path.parts if part != "."]
    _check_parts(name, parts)
    return "/".join(parts)


def filename_of(block: CodeBlock) -> str | None:
    """The name the block asks to be saved under: `block.filename`, else a `# filename:` first line."""
    if block.filename is not None:
        return block.filename
    first_line = block.code.lstrip("\n").split("\n", 1)[0]
    match = _FILENAME_LINE.match(first_line)
    return match.group("name") if match else None


def _step(block: CodeBlock) -> Step:
    requested = filename_of(block)
    name = safe_filename(requested) if requested is not None else _generated_name(block)
    return Step(filename=name, content=block.code, argv=(_COMMANDS[block.language], name))


def _generated_name(block: CodeBlock) -> str:
    digest = hashlib.sha256(block.code.encode()).hexdigest()[:32]
    return f"tmp_code_{digest}.{_EXTENSIONS[block.language]}"


def _check_parts(name: str, parts: list[str]) -> None:
    if not parts:
        raise PlanError(f"filename {name!r} names the workspace itself, not a file")
    if parts[0].startswith("-"):
        raise PlanError(f"filename {name!r} starts with '-' and would be read as an option")
    if len(name.encode()) > _MAX_NAME_BYTES or any(len(part.encode()) > _MAX_PART_BYTES for part in parts):
        raise PlanError(f"filename {name[:80]!r}... is too long")
