"""The deployment files parse and say what the README promises: kinds, commands, Redis, lockfile."""

from __future__ import annotations

import itertools
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentbot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/kubernetes"
# Read by something other than agentbot's settings: the docker SDK, or docker compose itself.
NOT_SETTINGS = {"DOCKER_GID", "DOCKER_HOST"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [doc for path in sorted(K8S.glob("*.yaml")) for doc in load_all(path)]
    return {(doc["kind"], doc.get("metadata", {}).get("name", "")): doc for doc in docs}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text(encoding="utf-8").splitlines()
    return {name: command.split() for name, _, command in (line.partition(": ") for line in lines if line)}


def test_kubernetes_manifests_have_the_expected_kinds() -> None:
    assert set(manifests()) == {
        ("Kustomization", ""),
        ("ConfigMap", "agentbot"),
        ("Service", "agentbot-redis"),
        ("StatefulSet", "agentbot-redis"),
        ("Deployment", "agentbot-web"),
        ("Service", "agentbot-web"),
        ("Deployment", "agentbot-worker"),
        ("ScaledObject", "agentbot-worker"),
        ("TriggerAuthentication", "agentbot-redis"),
    }


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_all(K8S / "kustomization.yaml")[0]
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_deployments_run_the_procfile_commands_and_selectors_match() -> None:
    found = manifests()
    commands = {"web": ["agentbot", "web"], "worker": ["agentbot", "worker"]}
    assert procfile()["web"] == commands["web"]
    for name, command in commands.items():
        deployment = found[("Deployment", f"agentbot-{name}")]
        assert container(deployment)["command"] == command
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert (
        found[("Service", "agentbot-web")]["spec"]["selector"]
        == found[("Deployment", "agentbot-web")]["spec"]["template"]["metadata"]["labels"]
    )


def test_keda_scales_the_worker_deployment_on_the_rq_queue() -> None:
    found = manifests()
    scaled = found[("ScaledObject", "agentbot-worker")]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "agentbot-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["listName"] == "rq:queue:agentbot"
    assert trigger["authenticationRef"]["name"] == "agentbot-redis"
    redis_url = found[("ConfigMap", "agentbot")]["data"]["REDIS_URL"]
    assert redis_url.startswith(f"redis://{trigger['metadata']['address']}/")


def test_worker_grace_outlasts_a_step() -> None:
    worker = manifests()[("Deployment", "agentbot-worker")]
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > Settings.model_fields["step_timeout"].default


def redis_flags(args: list[str]) -> dict[str, str]:
    return {flag.removeprefix("--"): value for flag, value in itertools.pairwise(args)}


def test_redis_keeps_state_with_aof_and_never_evicts() -> None:
    k8s = container(manifests()[("StatefulSet", "agentbot-redis")])["args"]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    for args in (k8s, compose["services"]["redis"]["command"]):
        flags = redis_flags(args)
        assert flags["appendonly"] == "yes" and flags["maxmemory-policy"] == "noeviction"


def test_compose_runs_web_and_workers_on_redis_with_the_docker_engine() -> None:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))["services"]
    assert services["web"]["command"] == procfile()["web"]
    assert services["worker"]["command"] == ["agentbot", "worker"]
    for name in ("web", "worker"):
        assert services[name]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["worker"]["volumes"]
    assert services["sandbox-image"]["build"]["dockerfile"] == "sandbox/Dockerfile"


def test_env_example_names_only_real_settings() -> None:
    known = {
        str(choice)
        for field in Settings.model_fields.values()
        for choice in getattr(field.validation_alias, "choices", ())
    }
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    named = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    assert named and named - NOT_SETTINGS <= known


def test_lockfile_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pinned = {_normal(name) for name in re.findall(r"^([A-Za-z0-9._-]+)==", lock, flags=re.MULTILINE)}
    wanted = {_normal(re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}
    assert wanted <= pinned, f"run `make lock`: {sorted(wanted - pinned)} not in requirements.lock"
    hashed = re.findall(r"^[A-Za-z0-9._-]+==\S+ \\\n\s+--hash=sha256:", lock, flags=re.MULTILINE)
    assert len(hashed) == len(pinned)  # `pip install --require-hashes` in the Dockerfile needs them all


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", ["Dockerfile", "sandbox/Dockerfile"])
def test_dockerfiles_copy_only_what_dockerignore_lets_through(name: str) -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    copies = re.findall(r"^COPY (.+)$", (ROOT / name).read_text(encoding="utf-8"), flags=re.MULTILINE)
    sources = [source for line in copies for source in line.split()[:-1]]
    assert sources
    for source in sources:
        assert any(source == a or source.startswith(a + "/") for a in allowed), source


def test_slack_manifest_asks_for_what_streaming_status_and_prompts_need() -> None:
    manifest = load_all(ROOT / "manifest.yaml")[0]
    assert "assistant_thread_started" in manifest["settings"]["event_subscriptions"]["bot_events"]
    assert {"assistant:write", "chat:write"} <= set(manifest["oauth_config"]["scopes"]["bot"])
    assert manifest["features"]["assistant_view"]["assistant_description"]
