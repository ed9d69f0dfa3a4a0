"""Settings from the environment and `.env`: defaults, lists, case, one-line errors naming the variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentbot.conversation.prompts import DEFAULT_SYSTEM_MESSAGE
from agentbot.conversation.state import CodeApproval, HumanInputMode, Policy
from agentbot.errors import ConfigError
from agentbot.settings import EngineSpec, Settings, load_settings

_PREFIXES = ("AGENTBOT_", "OPENAI_", "SLACK_")
_NAMES = ("REDIS_URL", "PORT")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting of the machine running the tests leaks in: neither its environment nor a `.env`."""
    for name in list(os.environ):
        upper = name.upper()  # settings are read case-insensitively
        if upper.startswith(_PREFIXES) or upper in _NAMES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_without_any_setting() -> None:
    settings = load_settings()
    assert settings.openai_api_key.get_secret_value() == ""
    assert settings.openai_base_url is None
    assert settings.model == ("gpt-4o-mini",)
    assert settings.redis_url is None
    assert settings.executor == "docker"
    assert settings.human_input_mode is HumanInputMode.TERMINATE
    assert settings.code_approval is CodeApproval.ALWAYS
    assert settings.max_consecutive_auto_reply == 10
    assert settings.max_turns is None
    assert settings.approvers == ()
    assert settings.max_cost_usd is None
    assert settings.system_message is None


@pytest.mark.parametrize(
    ("value", "models"),
    [
        pytest.param("gpt-4o", ("gpt-4o",), id="one"),
        pytest.param("a, b", ("a", "b"), id="comma_and_space"),
        pytest.param("gpt-4o,gpt-4o-mini,llama3.1:8b", ("gpt-4o", "gpt-4o-mini", "llama3.1:8b"), id="three"),
        pytest.param(" a ,, b , ", ("a", "b"), id="empty_parts_dropped"),
    ],
)
def test_model_is_an_ordered_comma_list(
    monkeypatch: pytest.MonkeyPatch, value: str, models: tuple[str, ...]
) -> None:
    monkeypatch.setenv("AGENTBOT_MODEL", value)
    assert load_settings().model == models


def test_approvers_are_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOT_APPROVERS", "U012AB3CD, U045EF6GH")
    assert load_settings().approvers == ("U012AB3CD", "U045EF6GH")


@pytest.mark.parametrize(
    ("value", "modules"),
    [("numpy, scipy", ("numpy", "scipy")), ("", ()), ("matplotlib.pyplot", ("matplotlib.pyplot",))],
)
def test_preimport_is_a_comma_list_that_may_be_empty(
    monkeypatch: pytest.MonkeyPatch, value: str, modules: tuple[str, ...]
) -> None:
    monkeypatch.setenv("AGENTBOT_SANDBOX_PREIMPORT", value)
    assert load_settings().sandbox_preimport == modules


def test_the_sandbox_pool_and_preimports_have_defaults() -> None:
    settings = load_settings()
    assert settings.sandbox_pool == 2
    assert settings.sandbox_preimport == ("numpy", "pandas", "matplotlib.pyplot")


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        pytest.param("ALWAYS", HumanInputMode.ALWAYS, id="upper"),
        pytest.param("never", HumanInputMode.NEVER, id="lower"),
        pytest.param("Terminate", HumanInputMode.TERMINATE, id="mixed"),
    ],
)
def test_human_input_mode_is_case_insensitive(
    monkeypatch: pytest.MonkeyPatch, value: str, mode: HumanInputMode
) -> None:
    monkeypatch.setenv("AGENTBOT_HUMAN_INPUT_MODE", value)
    assert load_settings().human_input_mode is mode


def test_code_approval_and_executor_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOT_CODE_APPROVAL", "NEVER")
    monkeypatch.setenv("AGENTBOT_EXECUTOR", "Local")
    settings = load_settings()
    assert settings.code_approval is CodeApproval.NEVER
    assert settings.executor == "local"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("AGENTBOT_MAX_CONSECUTIVE_AUTO_REPLY", "-1", id="negative_auto_reply_limit"),
        pytest.param("AGENTBOT_MAX_CONSECUTIVE_AUTO_REPLY", "ten", id="auto_reply_limit_not_a_number"),
        pytest.param("AGENTBOT_EXECUTOR", "podman", id="unknown_executor"),
        pytest.param("AGENTBOT_HUMAN_INPUT_MODE", "sometimes", id="unknown_human_input_mode"),
        pytest.param("AGENTBOT_CODE_APPROVAL", "maybe", id="unknown_code_approval"),
        pytest.param("AGENTBOT_MAX_TURNS", "0", id="zero_max_turns"),
        pytest.param("AGENTBOT_MAX_COST_USD", "-5", id="negative_budget"),
        pytest.param("AGENTBOT_LLM_TIMEOUT", "soon", id="timeout_not_a_number"),
        pytest.param("PORT", "70000", id="port_out_of_range"),
        pytest.param("AGENTBOT_SANDBOX_WARM_SECONDS", "0", id="zero_warm_seconds"),
        pytest.param("AGENTBOT_LOG_LEVEL", "loud", id="unknown_log_level"),
        pytest.param("AGENTBOT_SANDBOX_MEMORY", "lots", id="memory_not_a_size"),
        pytest.param("AGENTBOT_SANDBOX_DISK", "1tb", id="disk_unit_unknown"),
        pytest.param("REDIS_URL", "localhost:6379", id="redis_url_without_scheme"),
        pytest.param("REDIS_URL", "redis://localhost:port/0", id="redis_url_port_not_a_number"),
        pytest.param("REDIS_URL", "http://localhost:6379", id="redis_url_wrong_scheme"),
        pytest.param("REDIS_URL", "redis://", id="redis_url_without_host"),
        pytest.param("OPENAI_BASE_URL", "localhost:11434/v1", id="openai_url_without_scheme"),
        pytest.param("SLACK_API_URL", "ftp://example.invalid/api/", id="slack_url_wrong_scheme"),
        pytest.param("AGENTBOT_WEB_THREADS", "0", id="zero_web_threads"),
        pytest.param("AGENTBOT_DOCKER_HOSTS", "unix:///a.sock,tcp://b:2375", id="engines_without_names"),
        pytest.param("AGENTBOT_DOCKER_HOSTS", "A=unix:///a.sock", id="engine_name_upper_case"),
        pytest.param("AGENTBOT_DOCKER_HOSTS", "a=ftp://b", id="engine_url_wrong_scheme"),
        pytest.param("AGENTBOT_DOCKER_HOSTS", "a=unix:///a,a=unix:///b", id="engine_named_twice"),
        pytest.param("AGENTBOT_DOCKER_HOSTS", "a=", id="engine_without_url"),
        pytest.param("AGENTBOT_WORKER_ENGINES", "a,B c", id="worker_engine_not_a_name"),
    ],
)
def test_bad_value_fails_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert name in message
    assert repr(value).lower() in message.lower()  # the value as given (case-normalized for enums)


TLS_REDIS = "rediss://:pw@cache.internal:6380/2"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        pytest.param("AGENTBOT_LOG_LEVEL", "debug", "DEBUG", id="log_level_any_case"),
        pytest.param("AGENTBOT_SANDBOX_MEMORY", "2G", "2G", id="memory_in_gigabytes"),
        pytest.param("AGENTBOT_SANDBOX_DISK", "1.5g", "1.5g", id="disk_with_a_fraction"),
        pytest.param("AGENTBOT_SANDBOX_MEMORY", "268435456", "268435456", id="memory_in_bytes"),
        pytest.param("REDIS_URL", TLS_REDIS, TLS_REDIS, id="tls_with_password"),
        pytest.param("REDIS_URL", "unix:///run/redis.sock", "unix:///run/redis.sock", id="unix_socket"),
        pytest.param("REDIS_URL", "", None, id="empty_redis_url_is_embedded_mode"),
    ],
)  # fmt: skip
def test_good_values_are_accepted(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: object
) -> None:
    monkeypatch.setenv(name, value)
    field = {"AGENTBOT_LOG_LEVEL": "log_level", "AGENTBOT_SANDBOX_MEMORY": "sandbox_memory",
             "AGENTBOT_SANDBOX_DISK": "sandbox_disk", "REDIS_URL": "redis_url"}[name]  # fmt: skip
    assert getattr(load_settings(), field) == expected


def test_a_bad_redis_url_is_shown_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@cache:port/0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "REDIS_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_several_bad_values_are_named_on_the_same_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOT_EXECUTOR", "podman")
    monkeypatch.setenv("AGENTBOT_HUMAN_INPUT_MODE", "sometimes")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert "AGENTBOT_EXECUTOR" in message
    assert "AGENTBOT_HUMAN_INPUT_MODE" in message


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "OPENAI_API_KEY=sk-from-dotenv\nAGENTBOT_MODEL=llama3.1, qwen2.5\nSOMETHING_ELSE=ignored\n"
    )
    settings = load_settings()
    assert settings.openai_api_key.get_secret_value() == "sk-from-dotenv"
    assert settings.model == ("llama3.1", "qwen2.5")


def test_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGENTBOT_EXECUTOR=local\n")
    monkeypatch.setenv("AGENTBOT_EXECUTOR", "none")
    assert load_settings().executor == "none"


def test_bad_value_in_dotenv_names_the_variable(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AGENTBOT_EXECUTOR=podman\n")
    with pytest.raises(ConfigError, match="AGENTBOT_EXECUTOR"):
        load_settings()


def test_secrets_are_not_shown_when_settings_are_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    settings = load_settings()
    assert "very-secret" not in repr(settings)
    assert "very-secret" not in str(settings)


def test_policy_carries_the_conversation_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AGENTBOT_HUMAN_INPUT_MODE": "never",
        "AGENTBOT_CODE_APPROVAL": "never",
        "AGENTBOT_MAX_CONSECUTIVE_AUTO_REPLY": "3",
        "AGENTBOT_MAX_TURNS": "7",
        "AGENTBOT_APPROVAL_TTL": "600",
        "AGENTBOT_APPROVERS": "U1,U2",
        "AGENTBOT_MAX_COST_USD": "1.5",
        "AGENTBOT_SYSTEM_MESSAGE": "Answer in French.",
    }.items():
        monkeypatch.setenv(name, value)
    assert load_settings().policy() == Policy(
        human_input_mode=HumanInputMode.NEVER,
        code_approval=CodeApproval.NEVER,
        max_consecutive_auto_reply=3,
        max_turns=7,
        approval_ttl_seconds=600,
        approvers=("U1", "U2"),
        system_message="Answer in French.",
        max_cost_usd=1.5,
    )


def test_policy_defaults_to_the_builtin_system_message() -> None:
    policy = load_settings().policy()
    assert policy.system_message == DEFAULT_SYSTEM_MESSAGE
    assert policy.human_input_mode is HumanInputMode.TERMINATE
    assert policy.code_approval is CodeApproval.ALWAYS
    assert policy.approval_ttl_seconds == 3600


def test_settings_are_frozen() -> None:
    settings: Settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.executor = "local"  # type: ignore[misc]  # assigning is what this test checks fails


def test_sandbox_warm_seconds_reach_the_docker_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentbot.sandbox.docker import DockerExecutor  # builds no client until it runs code

    assert DockerExecutor.from_settings(load_settings()).warm_seconds == 600.0
    monkeypatch.setenv("AGENTBOT_SANDBOX_WARM_SECONDS", "45")
    assert DockerExecutor.from_settings(load_settings()).warm_seconds == 45.0


def test_egress_defaults_are_the_proxy_with_no_host_allowed() -> None:
    settings = load_settings()
    assert settings.sandbox_network == "proxy"
    assert settings.sandbox_allow_hosts == ()
    assert settings.sandbox_thread_allow == "public"
    assert settings.sandbox_index_url is None
    assert settings.sandbox_egress_bytes == 200 * 1024 * 1024
    assert settings.sandbox_egress_connections == 256
    egress = settings.egress()
    assert (egress.network, egress.operator_hosts, egress.thread_allow) == ("proxy", (), "public")


def test_egress_lists_the_workspace_hosts_then_the_package_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOT_SANDBOX_NETWORK", "None")
    monkeypatch.setenv("AGENTBOT_SANDBOX_ALLOW_HOSTS", "Data.Example.org, *.cdn.example.org,db.internal:5432")
    monkeypatch.setenv("AGENTBOT_SANDBOX_THREAD_ALLOW", "ANY")
    monkeypatch.setenv("AGENTBOT_SANDBOX_INDEX_URL", "http://mirror.internal:3141/root/pypi/+simple/")
    egress = load_settings().egress()
    assert egress.network == "none"
    assert egress.thread_allow == "any"
    assert egress.operator_hosts == (
        "data.example.org",
        "*.cdn.example.org",
        "db.internal:5432",
        "mirror.internal:3141",
    )
    # the index is an exact operator entry: trusted even on a private address
    assert "mirror.internal:3141" in egress.grant().private_hosts


@pytest.mark.parametrize(
    ("value", "size"),
    [("200m", 200 * 1024**2), ("1G", 1024**3), ("512k", 512 * 1024), ("1000", 1000), ("64MiB", 64 * 1024**2)],
)
def test_egress_bytes_take_a_size(monkeypatch: pytest.MonkeyPatch, value: str, size: int) -> None:
    monkeypatch.setenv("AGENTBOT_SANDBOX_EGRESS_BYTES", value)
    assert load_settings().sandbox_egress_bytes == size


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("AGENTBOT_SANDBOX_NETWORK", "host", "AGENTBOT_SANDBOX_NETWORK: Input should be 'proxy', 'none' or"),
        (
            "AGENTBOT_SANDBOX_ALLOW_HOSTS",
            "a.org, https://b.org",
            "AGENTBOT_SANDBOX_ALLOW_HOSTS: Value error,",
        ),
        ("AGENTBOT_SANDBOX_ALLOW_HOSTS", "a.org:99999", "the port must be a number from 1 to 65535"),
        ("AGENTBOT_SANDBOX_THREAD_ALLOW", "all", "AGENTBOT_SANDBOX_THREAD_ALLOW: Input should be"),
        ("AGENTBOT_SANDBOX_INDEX_URL", "ftp://mirror/", "is not an http:// or https:// URL"),
        ("AGENTBOT_SANDBOX_EGRESS_BYTES", "lots", "expected a size such as 200m"),
        ("AGENTBOT_SANDBOX_EGRESS_CONNECTIONS", "0", "AGENTBOT_SANDBOX_EGRESS_CONNECTIONS: Input should be"),
    ],
)
def test_a_bad_egress_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="invalid setting") as caught:
        load_settings()
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", (EngineSpec("default"),)),
        ("tcp://10.0.0.7:2375", (EngineSpec("default", "tcp://10.0.0.7:2375"),)),
        (
            "a=unix:///var/run/docker.sock, gpu-2 = ssh://ops@gpu2",
            (EngineSpec("a", "unix:///var/run/docker.sock"), EngineSpec("gpu-2", "ssh://ops@gpu2")),
        ),
        ("only=unix:///x.sock", (EngineSpec("only", "unix:///x.sock"),)),
    ],
    ids=["unset", "one_bare_url", "named", "one_named"],
)
def test_docker_hosts_are_named_engines(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: object
) -> None:
    monkeypatch.setenv("AGENTBOT_DOCKER_HOSTS", value)
    assert load_settings().docker_hosts == expected


@pytest.mark.parametrize(
    ("wanted", "served"),
    [("", ("a", "b")), ("b", ("b",)), ("b, a", ("a", "b")), ("b,zz", ("b",))],
    ids=["all_by_default", "one", "in_configured_order", "unknown_names_left_out"],
)
def test_a_worker_serves_the_engines_it_names_that_exist(
    monkeypatch: pytest.MonkeyPatch, wanted: str, served: tuple[str, ...]
) -> None:
    monkeypatch.setenv("AGENTBOT_DOCKER_HOSTS", "a=unix:///a.sock,b=unix:///b.sock")
    monkeypatch.setenv("AGENTBOT_WORKER_ENGINES", wanted)
    assert tuple(spec.name for spec in load_settings().served_engines()) == served


def test_a_worker_serving_no_engine_that_exists_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBOT_DOCKER_HOSTS", "a=unix:///a.sock")
    monkeypatch.setenv("AGENTBOT_WORKER_ENGINES", "c,d")
    with pytest.raises(
        ConfigError, match=r"AGENTBOT_WORKER_ENGINES: c, d: none is in AGENTBOT_DOCKER_HOSTS \(a\)"
    ):
        load_settings().served_engines()
