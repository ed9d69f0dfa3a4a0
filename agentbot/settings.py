"""All configuration, read once from the environment and `.env`; nothing else reads the environment."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentbot.conversation import hosts
from agentbot.conversation.prompts import DEFAULT_SYSTEM_MESSAGE
from agentbot.conversation.state import CodeApproval, EgressState, HumanInputMode, Policy, ThreadAllow
from agentbot.errors import ConfigError

_BYTES = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


# -- Docker engines (AGENTBOT_DOCKER_HOSTS; the adapter is agentbot.sandbox.engines) --

DEFAULT_ENGINE = "default"
_ENGINE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_ENGINE_SCHEMES = ("unix", "tcp", "ssh", "http", "https")


@dataclass(frozen=True)
class EngineSpec:
    """One Docker engine: its name (kept in conversation state and queue names) and URL (None: the
    environment's, as the docker SDK's `from_env` finds it)."""

    name: str
    url: str | None = None


def parse_hosts(text: str) -> tuple[EngineSpec, ...]:
    """`AGENTBOT_DOCKER_HOSTS`: `name=url` entries, commas between; one bare URL is the `default` engine.

    Raises `ValueError` with one line for a bad name, URL or repeat.
    """
    entries = [part.strip() for part in text.split(",") if part.strip()]
    if not entries:
        return (EngineSpec(DEFAULT_ENGINE),)
    if len(entries) == 1 and "=" not in entries[0]:
        return (EngineSpec(DEFAULT_ENGINE, _engine_url(entries[0])),)
    specs: list[EngineSpec] = []
    for entry in entries:
        name, equals, url = (part.strip() for part in entry.partition("="))
        if not equals:
            raise ValueError(f"{entry!r}: give each engine a name, as name=url (e.g. a=tcp://10.0.0.7:2375)")
        specs.append(EngineSpec(check_name(name), _engine_url(url)))
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"engine names must differ: {', '.join(repeated)} given twice")
    return tuple(specs)


def check_name(name: str) -> str:
    if not _ENGINE_NAME.match(name):
        raise ValueError(f"{name!r} is not an engine name (lower-case letters, digits, - and _; at most 32)")
    return name


def _engine_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in _ENGINE_SCHEMES or not (parts.netloc or parts.path):
        raise ValueError(f"{value!r} is not a Docker engine URL (unix://PATH, tcp://HOST:PORT or ssh://HOST)")
    return value


def served_engines(specs: Sequence[EngineSpec], wanted: Sequence[str]) -> tuple[EngineSpec, ...]:
    """The engines a worker serves: those of `wanted` that exist (all when it is empty).

    `ValueError` when none of `wanted` exists: such a worker could never run code.
    """
    if not wanted:
        return tuple(specs)
    served = tuple(spec for spec in specs if spec.name in wanted)
    if not served:
        known = ", ".join(spec.name for spec in specs)
        raise ValueError(f"{', '.join(wanted)}: none is in AGENTBOT_DOCKER_HOSTS ({known})")
    return served


class Settings(BaseSettings):
    """Every setting agentbot has; the README's settings table lists the same names."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True, frozen=True)

    # Language model (any OpenAI-compatible server)
    openai_api_key: SecretStr = Field(SecretStr(""), validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    model: Annotated[tuple[str, ...], NoDecode] = Field(
        ("gpt-4o-mini",), validation_alias=_env("AGENTBOT_MODEL")
    )
    # AutoGen's convention: the JSON itself or a file's path; secret, since inline JSON holds keys
    config_list: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AGENTBOT_CONFIG_LIST", "OAI_CONFIG_LIST")
    )
    config_tags: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("AGENTBOT_CONFIG_TAGS")
    )
    llm_timeout: float = Field(60.0, gt=0, validation_alias=_env("AGENTBOT_LLM_TIMEOUT"))
    llm_max_retries: int = Field(2, ge=0, validation_alias=_env("AGENTBOT_LLM_MAX_RETRIES"))

    # State and queue
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    step_timeout: int = Field(900, gt=0, validation_alias=_env("AGENTBOT_STEP_TIMEOUT"))

    # Conversation rules (AutoGen 0.2 names)
    human_input_mode: HumanInputMode = Field(
        HumanInputMode.TERMINATE, validation_alias=_env("AGENTBOT_HUMAN_INPUT_MODE")
    )
    code_approval: CodeApproval = Field(CodeApproval.ALWAYS, validation_alias=_env("AGENTBOT_CODE_APPROVAL"))
    max_consecutive_auto_reply: int = Field(
        10, ge=0, validation_alias=_env("AGENTBOT_MAX_CONSECUTIVE_AUTO_REPLY")
    )
    max_turns: int | None = Field(None, gt=0, validation_alias=_env("AGENTBOT_MAX_TURNS"))
    approval_ttl: int = Field(3600, gt=0, validation_alias=_env("AGENTBOT_APPROVAL_TTL"))
    approvers: Annotated[tuple[str, ...], NoDecode] = Field((), validation_alias=_env("AGENTBOT_APPROVERS"))
    max_cost_usd: float | None = Field(None, gt=0, validation_alias=_env("AGENTBOT_MAX_COST_USD"))
    system_message: str | None = Field(None, validation_alias=_env("AGENTBOT_SYSTEM_MESSAGE"))
    teams_file: Path | None = Field(None, validation_alias=_env("AGENTBOT_TEAMS_FILE"))

    # Code execution
    executor: Literal["docker", "local", "none"] = Field("docker", validation_alias=_env("AGENTBOT_EXECUTOR"))
    # `name=url` per engine (engines.py); unset: the environment's one engine, named `default`
    docker_hosts: Annotated[tuple[EngineSpec, ...], NoDecode] = Field(
        (EngineSpec(DEFAULT_ENGINE),), validation_alias=_env("AGENTBOT_DOCKER_HOSTS")
    )
    # the engines `agentbot worker` serves, by name (unset: all of them)
    worker_engines: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("AGENTBOT_WORKER_ENGINES")
    )
    workdir: Path = Field(Path(".agentbot/workspaces"), validation_alias=_env("AGENTBOT_WORKDIR"))
    sandbox_image: str = Field("agentbot-sandbox:latest", validation_alias=_env("AGENTBOT_SANDBOX_IMAGE"))
    sandbox_timeout: float = Field(60.0, gt=0, validation_alias=_env("AGENTBOT_SANDBOX_TIMEOUT"))
    # `proxy`: out only through the egress proxy and its allowed hosts; `none`: no network; `bridge`: open
    sandbox_network: Literal["proxy", "none", "bridge"] = Field(
        "proxy", validation_alias=_env("AGENTBOT_SANDBOX_NETWORK")
    )
    sandbox_allow_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("AGENTBOT_SANDBOX_ALLOW_HOSTS")
    )
    sandbox_thread_allow: ThreadAllow = Field(
        "public", validation_alias=_env("AGENTBOT_SANDBOX_THREAD_ALLOW")
    )
    sandbox_index_url: str | None = Field(None, validation_alias=_env("AGENTBOT_SANDBOX_INDEX_URL"))
    sandbox_egress_bytes: int = Field(
        200 * 1024**2, gt=0, validation_alias=_env("AGENTBOT_SANDBOX_EGRESS_BYTES")
    )
    sandbox_egress_connections: int = Field(
        256, gt=0, validation_alias=_env("AGENTBOT_SANDBOX_EGRESS_CONNECTIONS")
    )
    sandbox_memory: str = Field("512m", validation_alias=_env("AGENTBOT_SANDBOX_MEMORY"))
    sandbox_cpus: float = Field(1.0, gt=0, validation_alias=_env("AGENTBOT_SANDBOX_CPUS"))
    sandbox_pids: int = Field(128, gt=0, validation_alias=_env("AGENTBOT_SANDBOX_PIDS"))
    sandbox_disk: str = Field("256m", validation_alias=_env("AGENTBOT_SANDBOX_DISK"))
    sandbox_warm_seconds: float = Field(600.0, gt=0, validation_alias=_env("AGENTBOT_SANDBOX_WARM_SECONDS"))
    sandbox_pool: int = Field(2, ge=0, validation_alias=_env("AGENTBOT_SANDBOX_POOL"))
    # imported once per warm container by its supervisor, so a run pays for its work, not its imports
    sandbox_preimport: Annotated[tuple[str, ...], NoDecode] = Field(
        ("numpy", "pandas", "matplotlib.pyplot"), validation_alias=_env("AGENTBOT_SANDBOX_PREIMPORT")
    )
    output_limit: int = Field(64_000, gt=0, validation_alias=_env("AGENTBOT_OUTPUT_LIMIT"))
    artifact_limit: int = Field(10_000_000, gt=0, validation_alias=_env("AGENTBOT_ARTIFACT_LIMIT"))
    workspace_ttl: int = Field(7 * 86400, gt=0, validation_alias=_env("AGENTBOT_WORKSPACE_TTL"))
    max_file_bytes: int = Field(20_000_000, gt=0, validation_alias=_env("AGENTBOT_MAX_FILE_BYTES"))

    # Tools (Python functions and MCP servers): each call's time limit; results keep `output_limit`
    tool_timeout: float = Field(30.0, gt=0, validation_alias=_env("AGENTBOT_TOOL_TIMEOUT"))

    # Slack
    slack_bot_token: SecretStr = Field(SecretStr(""), validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr = Field(SecretStr(""), validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_app_token: SecretStr = Field(SecretStr(""), validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL"))
    port: int = Field(3000, gt=0, lt=65536, validation_alias=_env("PORT"))
    # HTTP mode with REDIS_URL: this many processes share the port (the in-memory Redis can't be shared)
    web_concurrency: int = Field(2, ge=1, validation_alias=_env("WEB_CONCURRENCY"))
    web_threads: int = Field(25, ge=1, validation_alias=_env("AGENTBOT_WEB_THREADS"))

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias=_env("AGENTBOT_LOG_LEVEL")
    )
    # `json`: one JSON object per line, with the conversation key (agentbot.logs)
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("AGENTBOT_LOG_FORMAT"))
    # `agentbot worker` serves Prometheus metrics on this port (unset: none); web serves them at /metrics
    metrics_port: int | None = Field(None, gt=0, lt=65536, validation_alias=_env("AGENTBOT_METRICS_PORT"))

    @field_validator("config_list", mode="before")
    @classmethod
    def _path_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @field_validator("docker_hosts", mode="before")
    @classmethod
    def _engines(cls, value: object) -> object:
        return parse_hosts(value) if isinstance(value, str) else value

    @field_validator("worker_engines", mode="before")
    @classmethod
    def _engine_names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(check_name(part.strip()) for part in value.split(",") if part.strip())
        return value

    @field_validator("model", "approvers", "config_tags", "sandbox_preimport", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("human_input_mode", "log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "code_approval", "executor", "sandbox_network", "sandbox_thread_allow", "log_format", mode="before"
    )
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("sandbox_memory", "sandbox_disk")
    @classmethod
    def _size(cls, value: str) -> str:
        if not _SIZE.match(value):
            raise ValueError("must be a size such as 512m or 2g (a number, then b, k, m or g)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value:
            _check_url(value, ("redis", "rediss", "unix"), "redis://HOST:6379/0")
        return value or None

    @field_validator("openai_base_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value:
            _check_url(value, ("http", "https"), "http://HOST:PORT/PATH")
        return value

    @field_validator("sandbox_allow_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: object) -> object:
        if isinstance(value, str):
            return hosts.parse_list(value)
        return hosts.parse_entries(value) if isinstance(value, list | tuple) else value

    @field_validator("sandbox_index_url", mode="before")
    @classmethod
    def _index_url(cls, value: object) -> object:
        if isinstance(value, str) and value.strip():
            hosts.url_entry(value)  # raises a one-line ValueError for anything but an http(s) URL
            return value.strip()
        return None if value == "" else value

    @field_validator("sandbox_egress_bytes", mode="before")
    @classmethod
    def _bytes(cls, value: object) -> object:
        """`200m`, `1g`, `512k` or a number of bytes (k, m, g are powers of 1024, as Docker's sizes)."""
        if not isinstance(value, str):
            return value
        match = _BYTES.match(value)
        if match is None:
            raise ValueError("expected a size such as 200m, 1g or a number of bytes")
        return int(match.group(1)) * _UNITS[match.group(2).lower()]

    def served_engines(self) -> tuple[EngineSpec, ...]:
        """The engines this worker serves (`AGENTBOT_WORKER_ENGINES`, all when unset); `ConfigError` when
        it names an engine `AGENTBOT_DOCKER_HOSTS` does not have."""
        try:
            return served_engines(self.docker_hosts, self.worker_engines)
        except ValueError as exc:
            raise ConfigError(f"AGENTBOT_WORKER_ENGINES: {exc}") from exc

    def policy(self) -> Policy:
        """The conversation rules these settings give (a team definition may override them)."""
        return Policy(
            human_input_mode=self.human_input_mode,
            code_approval=self.code_approval,
            max_consecutive_auto_reply=self.max_consecutive_auto_reply,
            max_turns=self.max_turns,
            approval_ttl_seconds=self.approval_ttl,
            approvers=self.approvers,
            system_message=self.system_message or DEFAULT_SYSTEM_MESSAGE,
            max_cost_usd=self.max_cost_usd,
        )

    def egress(self) -> EgressState:
        """What every conversation's runs may reach, before channel, team and thread lists are added.

        The package index is trusted as given (an `http://` internal mirror too): its host:port is one
        of the operator's exact entries.
        """
        index = (hosts.url_entry(self.sandbox_index_url),) if self.sandbox_index_url else ()
        return EgressState(
            network=self.sandbox_network,
            operator_hosts=tuple(dict.fromkeys((*self.sandbox_allow_hosts, *index))),
            thread_allow=self.sandbox_thread_allow,
        )


_SIZE = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)  # Docker's size syntax (`--memory 512m`)


def _check_url(value: str, schemes: tuple[str, ...], example: str) -> None:
    """A URL with one of `schemes`, a host (or a socket path) and a numeric port, or `ValueError`."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"is not a URL such as {example} ({exc})") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must start with {' or '.join(s + '://' for s in schemes)} (e.g. {example})")
    if not (parts.hostname or (parts.scheme == "unix" and parts.path)) or port == 0:
        raise ValueError(f"names no host (e.g. {example})")


def load_settings(**overrides: object) -> Settings:
    """Read the settings; a bad value raises `ConfigError` with one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # overrides are validated like env values
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from exc


def _one_line(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else "settings"
        field = Settings.model_fields.get(name)
        alias = field.validation_alias if field else None
        if isinstance(alias, AliasChoices):
            name = str(alias.choices[0])
        problems.append(f"{name}: {error['msg']} (got {_shown(error.get('input'))!r})")
    return "invalid setting " + "; ".join(problems)


def _shown(value: object) -> object:
    """A bad value as an error may print it: a URL without its password (`redis://:secret@host`)."""
    if isinstance(value, str) and "@" in value and "://" in value:
        scheme, _, rest = value.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return value
