"""AutoGen config lists: inline JSON or a file, tags, Azure entries, prices, and no key in any error."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from agentbot.errors import ConfigError
from agentbot.llm.config_list import (
    ConfigEntry,
    ModelConfig,
    check_prices,
    configs_from_settings,
    price_per_1k,
    read_config_list,
    with_tags,
)
from agentbot.settings import load_settings

SECRET = "sk-very-secret-0123456789"
AZURE = {
    "model": "gpt4o-deploy",
    "api_type": "azure",
    "api_version": "2024-06-01",
    "base_url": "https://example-resource.openai.azure.com",
    "api_key": SECRET,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting of the machine running the tests leaks in: neither its environment nor a `.env`."""
    for name in list(os.environ):
        if name.upper().startswith(("AGENTBOT_", "OPENAI_", "OAI_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def entry(model: str, *tags: str, **more: object) -> ConfigEntry:
    return ConfigEntry.model_validate({"model": model, "tags": list(tags), **more})


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('[{"model": "gpt-4o", "api_key": "' + SECRET + '",}]', id="trailing_comma"),
        pytest.param('[{"model": "gpt-4o", "api_key": "' + SECRET + '"', id="unclosed"),
        pytest.param('{"model": "gpt-4o", "api_key": "' + SECRET + '"}', id="not_a_list"),
        pytest.param('[{"modell": "gpt-4o", "api_key": "' + SECRET + '"}]', id="no_model"),
        pytest.param('[{"model": 4, "api_key": "' + SECRET + '"}]', id="model_not_text"),
        pytest.param('[{"model": "m", "api_key": "' + SECRET + '", "price": "cheap"}]', id="bad_price"),
        pytest.param('[{"model": "m", "api_key": "' + SECRET + '", "api_type": "google"}]', id="api_type"),
        pytest.param(json.dumps([{**AZURE, "api_version": None}]), id="azure_without_version"),
        pytest.param("[]", id="empty"),
    ],
)
def test_malformed_inline_json_is_one_line_without_the_key(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        read_config_list(text)
    message = str(raised.value)
    assert message.startswith("AGENTBOT_CONFIG_LIST (inline JSON)")
    assert SECRET not in message and "\n" not in message
    error = raised.value  # and no chained traceback can show it either
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[{"model": "a"},]', "is not valid JSON: Expecting value at line 1 column 17"),
        ('[{"model": "a"}, {"model": 4}]', "entry 2: model: Input should be a valid string"),
        ('[{"model": "a", "price": [1]}]', "entry 1: price.1: Field required"),
        ('[{"model": "a", "price": [-1, 1]}]', "entry 1: price.0: Input should be greater than or equal"),
        (json.dumps([{**AZURE, "base_url": None}]), "entry 1: Value error, api_type azure needs base_url"),
    ],
)
def test_errors_name_the_entry_and_the_field(text: str, said: str) -> None:
    with pytest.raises(ConfigError, match=r"^AGENTBOT_CONFIG_LIST") as raised:
        read_config_list(text)
    assert said in str(raised.value)


def test_inline_json_and_a_file_give_the_same_entries(tmp_path: Path) -> None:
    text = json.dumps([{"model": "gpt-4o", "tags": ["fast"], "price": [0.001, 0.002]}, AZURE])
    path = tmp_path / "OAI_CONFIG_LIST"
    path.write_text(text, encoding="utf-8")
    inline = read_config_list("  " + text)
    assert read_config_list(str(path)) == inline
    assert [e.model for e in inline] == ["gpt-4o", "gpt4o-deploy"]
    assert inline[0].price == (0.001, 0.002) and inline[1].api_type == "azure"


def test_missing_file_is_named_but_a_value_that_is_not_a_path_is_not_repeated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the file config/oai\.json: No such file"):
        read_config_list("config/oai.json")
    with pytest.raises(ConfigError) as raised:
        read_config_list(f"model: gpt-4o api_key: {SECRET}")
    assert SECRET not in str(raised.value) and "(the value, not shown)" in str(raised.value)


def test_malformed_file_names_the_file_not_its_content(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(f'[{{"model": 1, "api_key": "{SECRET}"}}]', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        read_config_list(str(path))
    assert f"file {path}: entry 1: model" in str(raised.value) and SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("tags", "kept"),
    [
        ((), ["a", "b", "c"]),
        (("fast",), ["a", "c"]),
        (("cheap", "fast"), ["a", "b", "c"]),
        (("cheap",), ["b"]),
    ],
)
def test_tags_keep_entries_with_any_of_them_in_order(tags: tuple[str, ...], kept: list[str]) -> None:
    entries = (entry("a", "fast"), entry("b", "cheap", "local"), entry("c", "fast", "gpt4"), entry("d"))
    if not tags:
        kept = [*kept, "d"]
    assert [e.model for e in with_tags(entries, tags)] == kept


def test_tags_matching_nothing_say_which_tags_there_are() -> None:
    with pytest.raises(ConfigError, match=r"AGENTBOT_CONFIG_TAGS=slow matches no entry .*fast, local"):
        with_tags((entry("a", "fast"), entry("b", "local")), ("slow",))


def test_settings_read_oai_config_list_and_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [{"model": "a", "tags": ["x"], "price": [0, 0]}, {**AZURE, "tags": ["y"], "price": [1, 2]}]
    monkeypatch.setenv("OAI_CONFIG_LIST", json.dumps(entries))
    monkeypatch.setenv("AGENTBOT_CONFIG_TAGS", "y, z")
    (config,) = configs_from_settings(load_settings())
    assert config.model == "gpt4o-deploy" and config.api_type == "azure"
    assert config.api_version == "2024-06-01" and config.api_key == SECRET
    assert SECRET not in repr(config) and SECRET not in repr(load_settings())


def test_agentbot_config_list_wins_over_oai_config_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAI_CONFIG_LIST", '[{"model": "theirs"}]')
    monkeypatch.setenv("AGENTBOT_CONFIG_LIST", '[{"model": "gpt-4o", "api_key": "k"}]')
    assert [c.model for c in configs_from_settings(load_settings())] == ["gpt-4o"]


def test_tags_without_a_config_list_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="AGENTBOT_CONFIG_TAGS filters AGENTBOT_CONFIG_LIST"):
        configs_from_settings(load_settings(config_tags="fast"))


@pytest.mark.parametrize(
    ("config", "served", "price"),
    [
        (ModelConfig("gpt-4o"), "", (0.0025, 0.01)),
        (ModelConfig("my-deploy"), "gpt-4o-2024-08-06", (0.0025, 0.01)),  # priced by what served it
        (ModelConfig("llama3.1", price_in_per_1k=0.0, price_out_per_1k=0.0), "", (0.0, 0.0)),
        (ModelConfig("gpt-4o", price_in_per_1k=1.0, price_out_per_1k=2.0), "", (1.0, 2.0)),
        (ModelConfig("llama3.1"), "llama3.1", None),
    ],
)
def test_price_per_1k(config: ModelConfig, served: str, price: tuple[float, float] | None) -> None:
    assert price_per_1k(config, served) == price


def test_unknown_price_is_a_warning_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agentbot.llm.config_list"):
        check_prices([ModelConfig("gpt-4o"), ModelConfig("llama3.1"), ModelConfig("llama3.1")], None)
    (record,) = caplog.records
    assert record.getMessage().startswith("no price known for llama3.1: its cost is reported as unknown")


def test_unknown_price_with_a_cost_cap_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"AGENTBOT_MAX_COST_USD is set but the price of llama3\.1"):
        check_prices([ModelConfig("llama3.1")], 1.0)
    check_prices([ModelConfig("llama3.1", price_in_per_1k=0.0, price_out_per_1k=0.0)], 1.0)
