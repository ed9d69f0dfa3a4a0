"""AutoGen's `config_list`: ordered model entries from inline JSON or a file, filtered by tags, priced.

An entry is AutoGen 0.2's shape::

    {"model": "gpt-4o", "api_key": "...", "base_url": "...", "tags": ["fast"],
     "price": [0.0025, 0.01]}                                   # USD per 1K prompt / completion tokens
    {"model": "my-deployment", "api_type": "azure", "api_version": "2024-06-01",
     "base_url": "https://NAME.openai.azure.com", "api_key": "..."}

`AGENTBOT_CONFIG_LIST` (or AutoGen's `OAI_CONFIG_LIST`) holds either the JSON itself or a path to a file
with it, as `autogen.config_list_from_json` reads them. `AGENTBOT_CONFIG_TAGS` keeps the entries that
carry one of its tags, like `filter_dict={"tags": [...]}`. The value may hold API keys: no error here
ever repeats it, and `ModelConfig` keeps its key out of `repr`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, NonNegativeFloat, ValidationError, model_validator

from agentbot.errors import ConfigError
from agentbot.settings import Settings

logger = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
LIST_SETTING = "AGENTBOT_CONFIG_LIST"
TAGS_SETTING = "AGENTBOT_CONFIG_TAGS"
ApiType = Literal["openai", "azure"]

# OpenAI list prices in USD per 1M tokens (input, output), as of 2025-08-01,
# from https://openai.com/api/pricing. Dated snapshots ("gpt-4o-2024-08-06") price as their family.
PRICES_PER_1M: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o1": (15.00, 60.00),
    "o1-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}

_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")
# A value echoed in errors must look like a file name: anything else may be (broken) JSON with a key.
_PATH_LIKE = re.compile(r"^[\w./~\\:-]{1,255}$")


@dataclass(frozen=True)
class ModelConfig:
    """One entry of the config list; `base_url` None means OpenAI's own API."""

    model: str
    base_url: str | None = None
    api_key: str = field(default="", repr=False)
    price_in_per_1k: float | None = None
    price_out_per_1k: float | None = None
    api_type: ApiType = "openai"
    api_version: str | None = None  # Azure OpenAI's `api-version` query parameter
    tags: tuple[str, ...] = ()

    @property
    def uses_openai(self) -> bool:
        """True when requests go to api.openai.com, which always needs a key."""
        if self.api_type == "azure":
            return False
        return self.base_url is None or urlsplit(self.base_url).hostname == "api.openai.com"

    @property
    def where(self) -> str:
        """The server's host[:port], for messages (never the key, never a path with secrets)."""
        parts = urlsplit(self.base_url or OPENAI_BASE_URL)
        return parts.netloc.rsplit("@", 1)[-1]


def price_per_1k(config: ModelConfig, served_model: str = "") -> tuple[float, float] | None:
    """(input, output) USD per 1K tokens: the config's price, else the built-in table; None if unknown."""
    if config.price_in_per_1k is not None or config.price_out_per_1k is not None:
        return config.price_in_per_1k or 0.0, config.price_out_per_1k or 0.0
    for name in (config.model, served_model):
        per_1m = PRICES_PER_1M.get(name) or PRICES_PER_1M.get(_SNAPSHOT.sub("", name))
        if per_1m is not None:
            return per_1m[0] / 1000, per_1m[1] / 1000
    return None


class ConfigEntry(BaseModel):
    """One entry of a config list, as in AutoGen's OAI_CONFIG_LIST (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str
    base_url: str | None = None
    api_key: str | None = None
    price: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    api_type: ApiType = "openai"
    api_version: str | None = None
    tags: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _azure_is_complete(self) -> Self:
        # The SDK would otherwise read AZURE_OPENAI_ENDPOINT / OPENAI_API_VERSION from the environment.
        if self.api_type == "azure" and not (self.base_url and self.api_version):
            raise ValueError("api_type azure needs base_url (the resource endpoint) and api_version")
        return self


def parse_config_list(text: str, source: str) -> tuple[ConfigEntry, ...]:
    """The entries of a config list's JSON; `ConfigError` naming `source` and the place, never the text."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:  # say the line and column, never the document (it holds keys)
        where = f"line {exc.lineno} column {exc.colno}"
        raise ConfigError(f"{source} is not valid JSON: {exc.msg} at {where}") from None
    if not isinstance(raw, list):
        raise ConfigError(f"{source} must be a JSON list of {{model, base_url?, api_key?, price?, ...}}")
    if not raw:
        raise ConfigError(f"{source} lists no model")
    entries = []
    for number, item in enumerate(raw, start=1):
        try:
            entries.append(ConfigEntry.model_validate(item))
        except ValidationError as exc:  # `from None`: the cause would show the values, keys included
            raise ConfigError(f"{source}: entry {number}: {_problems(exc)}") from None
    return tuple(entries)


def _problems(exc: ValidationError) -> str:
    """Where and what, without the input values (pydantic's own message repeats them)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(problems)


def read_config_list(value: str) -> tuple[ConfigEntry, ...]:
    """Entries from the setting's value: inline JSON (starts with `[`), else a path to a JSON file."""
    if value.lstrip().startswith(("[", "{")):
        return parse_config_list(value, f"{LIST_SETTING} (inline JSON)")
    shown = value if _PATH_LIKE.match(value) else "(the value, not shown)"
    try:
        text = Path(value).expanduser().read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(
            f"{LIST_SETTING}: cannot read the file {shown}: {reason} (give a JSON file's path or the JSON)"
        ) from None
    return parse_config_list(text, f"{LIST_SETTING} file {shown}")


def with_tags(entries: Sequence[ConfigEntry], tags: Sequence[str]) -> tuple[ConfigEntry, ...]:
    """The entries carrying at least one of `tags` (all entries when `tags` is empty), in order."""
    if not tags:
        return tuple(entries)
    kept = tuple(entry for entry in entries if set(entry.tags) & set(tags))
    if not kept:
        known = sorted({tag for entry in entries for tag in entry.tags})
        raise ConfigError(
            f"{TAGS_SETTING}={','.join(tags)} matches no entry of {LIST_SETTING} "
            f"(its tags: {', '.join(known) or 'none'})"
        )
    return kept


def configs_from_settings(settings: Settings) -> list[ModelConfig]:
    """The config list of the settings, checked: prices known, or a warning (fatal with a budget)."""
    if settings.config_list is not None:
        entries = read_config_list(settings.config_list.get_secret_value())
        configs = [_from_entry(entry, settings) for entry in with_tags(entries, settings.config_tags)]
    elif settings.config_tags:
        raise ConfigError(f"{TAGS_SETTING} filters {LIST_SETTING}, which is not set")
    else:
        configs = configs_from_models(settings)
    check_prices(configs, settings.max_cost_usd)
    return configs


def configs_from_models(settings: Settings) -> list[ModelConfig]:
    """One config per `AGENTBOT_MODEL` name, all on `OPENAI_BASE_URL` with `OPENAI_API_KEY`."""
    if not settings.model:
        raise ConfigError("AGENTBOT_MODEL names no model (give one or more, comma-separated)")
    key = settings.openai_api_key.get_secret_value()
    return [
        ModelConfig(model=name, base_url=settings.openai_base_url, api_key=key) for name in settings.model
    ]


def check_prices(configs: Sequence[ModelConfig], max_cost_usd: float | None) -> None:
    """An unknown price is a warning; with `AGENTBOT_MAX_COST_USD` it is fatal (the cap can't be kept)."""
    unpriced = list(dict.fromkeys(config.model for config in configs if price_per_1k(config) is None))
    if not unpriced:
        return
    names = ", ".join(unpriced)
    fix = f'give "price": [prompt, completion] in USD per 1K tokens in {LIST_SETTING} ([0, 0] if free)'
    if max_cost_usd is not None:
        raise ConfigError(
            f"AGENTBOT_MAX_COST_USD is set but the price of {names} is unknown, "
            f"so the cap cannot be kept: {fix}"
        )
    logger.warning("no price known for %s: its cost is reported as unknown; %s", names, fix)


def _from_entry(entry: ConfigEntry, settings: Settings) -> ModelConfig:
    price_in, price_out = entry.price if entry.price is not None else (None, None)
    return ModelConfig(
        model=entry.model,
        base_url=entry.base_url or settings.openai_base_url,
        api_key=entry.api_key if entry.api_key is not None else settings.openai_api_key.get_secret_value(),
        price_in_per_1k=price_in,
        price_out_per_1k=price_out,
        api_type=entry.api_type,
        api_version=entry.api_version,
        tags=entry.tags,
    )
