"""Checks of what a process needs (Redis, Slack, the model server, Docker), one line each with the fix.

At start (`at_start`), a configuration error is fatal: a dead Redis (needed from the first second), a
bad Slack token, a missing sandbox image. A service that is only unreachable right now (Slack, the model
server, the Docker engine) gets a warning line: it may come back, and the work that needs it retries.
`agentbot doctor` runs every check and prints a table (`render_table`); there, anything not `ok` counts.

Each check talks to its service through the vendor's client directly, with short timeouts and no
retries, and translates that client's errors into a `Check` here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from agentbot.errors import ConfigError
from agentbot.settings import EngineSpec, Settings

if TYPE_CHECKING:
    from docker import DockerClient

logger = logging.getLogger(__name__)

# The vendors' clients log the failures these checks report in their own words: one line is enough.
_VENDOR_LOG = logging.getLogger("agentbot.doctor.vendor")
_VENDOR_LOG.setLevel(logging.CRITICAL)
TIMEOUT = 5.0  # seconds per check: long enough for a slow link, short enough for a start
Role = Literal["web", "worker", "doctor"]


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # unreachable now: a warning at start, a failure for `agentbot doctor`
    FAIL = "FAIL"  # a configuration error: fatal at start
    SKIP = "skip"  # not used by this configuration


@dataclass(frozen=True)
class Check:
    """One thing checked: its name, what was found and, when it is not ok, the fix."""

    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.name}: {self.detail}"


class StartupError(ConfigError):
    """One or more fatal checks failed at start; `lines` holds one line per failure."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = tuple(lines)


def at_start(settings: Settings, role: Literal["web", "worker"]) -> None:
    """Run `role`'s checks: warnings are logged, failures raise `StartupError` (one line each)."""
    checks = run_checks(settings, role)
    for check in checks:
        if check.status is Status.WARN:
            logger.warning("%s", check.line())
    failed = [check.line() for check in checks if check.status is Status.FAIL]
    if failed:
        raise StartupError(failed)


def run_checks(settings: Settings, role: Role) -> list[Check]:
    """The checks `role` needs (`doctor`: all of them), in order."""
    embedded_web = role == "web" and not settings.redis_url
    steps: list[Callable[[Settings], list[Check]]] = [redis_check, slack_check]
    if role != "web" or embedded_web:  # the web runs steps itself only in the embedded mode
        steps.append(model_check)
    if role != "web":
        steps.append(docker_checks)
    return [check for step in steps for check in step(settings)]


def render_table(checks: Sequence[Check]) -> str:
    """The checks as an aligned text table (status, name, detail)."""
    width = max((len(check.name) for check in checks), default=5)
    rows = [f"{'status':<6}  {'check':<{width}}  detail"]
    rows += [f"{check.status.value:<6}  {check.name:<{width}}  {check.detail}" for check in checks]
    return "\n".join(rows)


def doctor_code(checks: Sequence[Check]) -> int:
    """`agentbot doctor`'s exit code: 0 when every check is ok (or skipped), else 1."""
    return 0 if all(check.status in (Status.OK, Status.SKIP) for check in checks) else 1


# -- Redis -----------------------------------------------------------------------------------------


def redis_check(settings: Settings) -> list[Check]:
    """PING the Redis at `REDIS_URL` (fatal when it does not answer: state and queue live there)."""
    import redis  # noqa: PLC0415  # each check loads only its own client
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    if not settings.redis_url:
        return [
            Check("redis", Status.SKIP, "no REDIS_URL: in-memory state in the web process (not persistent)")
        ]
    where = _where(settings.redis_url)
    client = redis.Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=TIMEOUT,
        socket_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        return [Check("redis", Status.FAIL, f"{where} refused the password ({exc}): fix it in REDIS_URL")]
    except redis.RedisError as exc:
        fix = "start Redis there or fix REDIS_URL"
        return [Check("redis", Status.FAIL, f"{where} is not reachable ({_short(exc)}): {fix}")]
    finally:
        client.close()
    return [Check("redis", Status.OK, f"{where} answers")]


# -- Slack -----------------------------------------------------------------------------------------

_BAD_TOKEN = {"invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"}


def slack_check(settings: Settings) -> list[Check]:
    """`auth.test` with the bot token (fatal if Slack refuses it); `apps.connections.open` in Socket Mode."""
    token = settings.slack_bot_token.get_secret_value()
    if not token:
        fix = "set it to the app's Bot User OAuth Token (xoxb-…, OAuth & Permissions)"
        return [Check("slack", Status.FAIL, f"SLACK_BOT_TOKEN is not set: {fix}")]
    checks = [_slack_call(settings, token, "auth.test", "SLACK_BOT_TOKEN")]
    app_token = settings.slack_app_token.get_secret_value()
    if app_token and checks[0].status is Status.OK:
        checks.append(_slack_call(settings, app_token, "apps.connections.open", "SLACK_APP_TOKEN"))
    return checks


def _slack_call(settings: Settings, token: str, method: str, setting: str) -> Check:
    from slack_sdk import WebClient  # noqa: PLC0415
    from slack_sdk.errors import SlackApiError, SlackClientError  # noqa: PLC0415

    name = "slack" if method == "auth.test" else "slack socket mode"
    where = _where(settings.slack_api_url)
    client = WebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=int(TIMEOUT),
        retry_handlers=[],
        logger=_VENDOR_LOG,
    )
    try:
        answer = client.api_call(method)
    except SlackApiError as exc:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        if error in _BAD_TOKEN or error in ("invalid_token", "not_allowed_token_type"):
            fix = f"Slack refused {setting} ({error}): copy the token again from the app's settings"
            return Check(name, Status.FAIL, fix)
        return Check(name, Status.WARN, f"Slack at {where} answered {error} to {method}: will retry")
    except (SlackClientError, OSError) as exc:
        detail = f"Slack at {where} is not reachable ({_short(exc)}): check SLACK_API_URL or the network"
        return Check(name, Status.WARN, detail)
    if method == "auth.test":
        return Check(
            name, Status.OK, f"{where} accepts the token (bot {answer.get('user')} in {answer.get('team')})"
        )
    return Check(name, Status.OK, f"{where} accepts the app token")


# -- the model server ------------------------------------------------------------------------------


def model_check(settings: Settings) -> list[Check]:
    """Each model server answers `GET models` (any HTTP answer counts: it is reachable)."""
    from agentbot.llm.openai_chat import OpenAIChat  # noqa: PLC0415

    try:
        configs = OpenAIChat.from_settings(settings).configs
    except ConfigError as exc:
        return [Check("model", Status.FAIL, str(exc))]
    servers = {(config.base_url, config.api_key): config for config in configs}
    return [_model_server(base_url, api_key, config.where) for (base_url, api_key), config in servers.items()]


def _model_server(base_url: str | None, api_key: str, where: str) -> Check:
    import openai  # noqa: PLC0415

    client = openai.OpenAI(base_url=base_url, api_key=api_key or "unset", timeout=TIMEOUT, max_retries=0)
    try:
        client.models.list()
    except openai.AuthenticationError:
        return Check("model", Status.WARN, f"{where} rejected the API key (401): check OPENAI_API_KEY")
    except openai.APIConnectionError as exc:
        detail = f"{where} is not reachable ({_short(exc.__cause__ or exc)}): check OPENAI_BASE_URL"
        return Check("model", Status.WARN, detail)
    except openai.APIStatusError:
        pass  # it answered (some servers have no `models` route): reachable is all this checks
    finally:
        client.close()
    return Check("model", Status.OK, f"{where} answers")


# -- Docker ----------------------------------------------------------------------------------------


def docker_checks(settings: Settings) -> list[Check]:
    """Each engine this worker serves answers `ping` (a warning if not: runs retry) and has the sandbox
    image (fatal if not). When none answers, one line says so; naming no engine that exists is fatal."""
    if settings.executor != "docker":
        return [Check("docker", Status.SKIP, f"AGENTBOT_EXECUTOR={settings.executor}: no sandbox")]
    try:
        engines = settings.served_engines()
    except ConfigError as exc:
        return [Check("docker", Status.FAIL, str(exc))]
    several = len(settings.docker_hosts) > 1
    checks: list[Check] = []
    down: list[str] = []
    for engine in engines:
        suffix = f" {engine.name}" if several else ""
        found = _engine_checks(engine, settings.sandbox_image, suffix)
        if isinstance(found, str):
            down.append(f"{engine.name}: {found}" if several else found)
            checks.append(
                Check(f"docker{suffix}", Status.WARN, f"the engine is not reachable ({found}); runs retry")
            )
        else:
            checks += found
    if down and len(down) == len(engines):  # one line for a worker that cannot run anything now
        fix = "fix AGENTBOT_DOCKER_HOSTS" if several else "start Docker or fix DOCKER_HOST"
        what = (
            f"no engine answers ({'; '.join(down)})"
            if several
            else f"the engine is not reachable ({down[0]})"
        )
        return [Check("docker", Status.WARN, f"{what}: {fix}; runs retry")]
    return checks


def _engine_checks(engine: EngineSpec, image: str, suffix: str) -> list[Check] | str:
    """The checks of one engine that answers, or why it does not (a short phrase)."""
    from docker.errors import DockerException  # noqa: PLC0415

    from agentbot.sandbox.docker.containers import docker_client  # noqa: PLC0415  # loads the docker SDK

    try:
        client = docker_client(engine.url, timeout=int(TIMEOUT))
        client.ping()
    except DockerException as exc:
        return _short(exc)
    try:
        return [
            Check(f"docker{suffix}", Status.OK, "the engine answers"),
            _image_check(client, image, suffix),
        ]
    finally:
        client.close()


def _image_check(client: DockerClient, image: str, suffix: str = "") -> Check:
    from docker.errors import DockerException, ImageNotFound  # noqa: PLC0415

    try:
        client.images.get(image)
    except ImageNotFound:
        fix = "build it with scripts/build-sandbox-image, or set AGENTBOT_SANDBOX_IMAGE"
        return Check(f"sandbox image{suffix}", Status.FAIL, f"{image} is not on the Docker engine: {fix}")
    except DockerException as exc:
        return Check(f"sandbox image{suffix}", Status.WARN, f"{image} could not be looked up ({_short(exc)})")
    return Check(f"sandbox image{suffix}", Status.OK, f"{image} is there")


def _where(url: str) -> str:
    """host:port of `url`, never its password."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or parts.path or url


def _short(exc: BaseException) -> str:
    """An exception as a short phrase (the first line, at most 160 characters)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
