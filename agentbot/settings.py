"""All configuration, read once from the environment and `.env`; nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentbot.conversation.prompts import DEFAULT_SYSTEM_MESSAGE
from agentbot.conversation.state import CodeApproval, HumanInputMode, Policy
from agentbot.errors import ConfigError


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """Every setting agentbot has; the README's settings table lists the same names."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True, frozen=True)

    # Language model (any OpenAI-compatible server)
    openai_api_key: SecretStr = Field(SecretStr(""), validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    model: Annotated[tuple[str, ...], NoDecode] = Field(
        ("gpt-4o-mini",), validation_alias=_env("AGENTBOT_MODEL")
    )
    config_list: Path | None = Field(None, validation_alias=_env("AGENTBOT_CONFIG_LIST"))
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
    workdir: Path = Field(Path(".agentbot/workspaces"), validation_alias=_env("AGENTBOT_WORKDIR"))
    sandbox_image: str = Field("agentbot-sandbox:latest", validation_alias=_env("AGENTBOT_SANDBOX_IMAGE"))
    sandbox_timeout: float = Field(60.0, gt=0, validation_alias=_env("AGENTBOT_SANDBOX_TIMEOUT"))
    sandbox_network: str = Field("none", validation_alias=_env("AGENTBOT_SANDBOX_NETWORK"))
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

    # Slack
    slack_bot_token: SecretStr = Field(SecretStr(""), validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr = Field(SecretStr(""), validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_app_token: SecretStr = Field(SecretStr(""), validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL"))
    port: int = Field(3000, gt=0, lt=65536, validation_alias=_env("PORT"))
    # HTTP mode with REDIS_URL: this many processes share the port (the in-memory Redis can't be shared)
    web_concurrency: int = Field(2, ge=1, validation_alias=_env("WEB_CONCURRENCY"))

    log_level: str = Field("INFO", validation_alias=_env("AGENTBOT_LOG_LEVEL"))

    @field_validator("model", "approvers", "sandbox_preimport", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("human_input_mode", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("code_approval", "executor", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

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
        problems.append(f"{name}: {error['msg']} (got {error.get('input')!r})")
    return "invalid setting " + "; ".join(problems)
