"""Values that cross the code-execution seam: code blocks in, results and artifacts out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Language = Literal["python", "sh"]


class CodeBlock(BaseModel):
    """One fenced block the assistant proposed; `filename` comes from a `# filename:` first line."""

    model_config = ConfigDict(frozen=True)

    code: str
    language: Language
    filename: str | None = None


class Artifact(BaseModel):
    """A file a run created or changed in the workspace."""

    model_config = ConfigDict(frozen=True)

    name: str
    mime_type: str
    size: int
    content: bytes = Field(repr=False)

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")


class InputFile(BaseModel):
    """A file a person shared, to be placed in the workspace before the next run."""

    model_config = ConfigDict(frozen=True)

    name: str
    content: bytes = Field(repr=False)


class EgressGrant(BaseModel):
    """The hosts one run may reach through the egress proxy (entries: `host`, `*.domain`, `host:port`).

    `hosts` reach public addresses only; `private_hosts` were named exactly by someone allowed to open
    private and Docker-host addresses (the operator, or a thread under `AGENTBOT_SANDBOX_THREAD_ALLOW=any`).
    Addresses that are never allowed (link-local, loopback, the proxy, Redis, the Docker API) stay shut.
    """

    model_config = ConfigDict(frozen=True)

    hosts: tuple[str, ...] = ()
    private_hosts: tuple[str, ...] = ()
    people_may_open_private: bool = False  # thread_allow `any`: a blocked private host is askable too


class EgressReport(BaseModel):
    """What a run did on the network through the egress proxy: the audit of one run.

    Hosts are named as people allow them: `host` for ports 80 and 443, else `host:port`.
    `askable` is the part of `blocked` that the people in the thread may allow with a button.
    """

    model_config = ConfigDict(frozen=True)

    contacted: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    askable: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. a cap on bytes or connections that was hit


class CodeResult(BaseModel):
    """What a run produced. A timeout is data (`timed_out`, exit code 124), never an exception."""

    model_config = ConfigDict(frozen=True)

    exit_code: int
    output: str
    artifacts: tuple[Artifact, ...] = ()
    timed_out: bool = False
    output_truncated: bool = False
    egress: EgressReport | None = None  # None: the run had no egress proxy (network `none` or `bridge`)
