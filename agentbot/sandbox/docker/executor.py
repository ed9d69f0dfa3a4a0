"""`DockerExecutor`: the CodeExecutor port over warm sandbox containers and the wrapper inside them."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import docker
import docker.errors
import requests.exceptions

from agentbot.conversation.code import Artifact, CodeBlock, CodeResult, EgressGrant, InputFile
from agentbot.errors import SandboxError
from agentbot.sandbox.artifacts import MAX_ARTIFACTS, left_out, make_artifact, select
from agentbot.sandbox.docker.containers import ContainerOptions, Containers, check_slug, parse_size
from agentbot.sandbox.docker.stream import (
    CONTROL_SLACK,
    Answer,
    Capped,
    Exec,
    Marked,
    Report,
    converse,
    fits_argument,
    parse_report,
    render,
    stream,
    tar,
)
from agentbot.sandbox.egress import audit
from agentbot.sandbox.egress.grant import Grant, sign
from agentbot.sandbox.egress.proxy import RELAY_PORT, EgressProxy, Proxy, ProxyOptions
from agentbot.sandbox.plan import PlanError, Step, plan_run, safe_filename
from agentbot.settings import EngineSpec, Settings

logger = logging.getLogger(__name__)

TIMEOUT_EXIT_CODE = 124  # what coreutils `timeout` and AutoGen report
GRACE_SECONDS = 5.0  # wrapper start, listing and artifact tar on top of the code's own time limit
PUT_SECONDS = 60.0
SUPERVISOR_WAIT = 20.0  # a run waits this long for a supervisor still importing (an exec would import too)


class DockerExecutor:
    """Runs code blocks in hardened, warm, per-conversation containers (see the package docstring)."""

    def __init__(
        self,
        *,
        image: str = "agentbot-sandbox:latest",
        timeout: float = 60.0,
        network: str = "none",
        memory: str = "512m",
        cpus: float = 1.0,
        pids: int = 128,
        disk: str = "256m",
        output_limit: int = 64_000,
        artifact_limit: int = 10_000_000,
        workspace_ttl: float = 7 * 86400,
        warm_seconds: float = 600.0,
        egress_bytes: int = 200 * 1024 * 1024,
        egress_requests: int = 256,
        preimport: Sequence[str] = ("numpy", "pandas", "matplotlib.pyplot"),
        pool: int = 0,
        index_url: str | None = None,
        redis_url: str | None = None,
        client: docker.DockerClient | None = None,
        base_url: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.output_limit = output_limit
        self.artifact_limit = artifact_limit
        self.workspace_ttl = workspace_ttl
        self.egress_bytes = egress_bytes
        self.egress_requests = egress_requests
        self.index_url = index_url
        self.egress: EgressProxy | None = None
        if network == "proxy":
            self.egress = EgressProxy(
                ProxyOptions(image=image, redis_url=redis_url, max_reply_bytes=self.egress_bytes)
            )
        options = ContainerOptions(
            image=image,
            network=network,
            memory=parse_size(memory),
            cpus=cpus,
            pids=pids,
            disk=parse_size(disk),
            warm_seconds=warm_seconds,
            preimport=tuple(preimport),
            pool=pool,
        )
        self.containers = Containers(options, client=client, base_url=base_url)
        self._starting: threading.Thread | None = None  # the previous run's next supervisor, on its way

    @classmethod
    def from_settings(cls, settings: Settings, engine: EngineSpec | None = None) -> DockerExecutor:
        """The executor of `engine` (None: the environment's engine) with the sandbox settings."""
        return cls(
            base_url=engine.url if engine is not None else None,
            image=settings.sandbox_image,
            timeout=settings.sandbox_timeout,
            network=settings.sandbox_network,
            memory=settings.sandbox_memory,
            cpus=settings.sandbox_cpus,
            pids=settings.sandbox_pids,
            disk=settings.sandbox_disk,
            warm_seconds=settings.sandbox_warm_seconds,
            output_limit=settings.output_limit,
            artifact_limit=settings.artifact_limit,
            workspace_ttl=settings.workspace_ttl,
            egress_bytes=settings.sandbox_egress_bytes,
            egress_requests=settings.sandbox_egress_connections,
            index_url=settings.sandbox_index_url,
            redis_url=settings.redis_url,
            preimport=settings.sandbox_preimport,
            pool=settings.sandbox_pool,
        )

    @property
    def image(self) -> str:
        return self.containers.options.image

    @image.setter
    def image(self, image: str) -> None:  # e.g. once the operator has built it
        self.containers.options = dataclasses.replace(self.containers.options, image=image)

    def ping(self) -> bool:
        """Whether the engine answers now."""
        return self.containers.answers()

    @property
    def warm_seconds(self) -> float:
        return self.containers.options.warm_seconds

    # -- the CodeExecutor port -------------------------------------------------------------------

    def run(
        self, workspace: str, blocks: Sequence[CodeBlock], *, grant: EgressGrant | None = None
    ) -> CodeResult:
        """Run `blocks` in order within one time limit, stopping at the first that fails."""
        check_slug(workspace)
        try:
            steps = plan_run(blocks)
        except PlanError as exc:
            return CodeResult(exit_code=1, output=f"Code not run: {exc}.")
        with self.containers.translated(workspace):
            proxy = self._proxy()
            label = f"{workspace}-{secrets.token_hex(4)}"
            started = time.time()
            environment = self._run_environment(proxy, label, grant or EgressGrant())
            done = self._run_steps(workspace, steps, proxy, environment)
            result = self._result(workspace, done)
            if proxy is not None:
                result = self._audited(result, proxy, label, started, grant or EgressGrant())
        logger.info(
            "workspace %s: ran %d block(s), exit code %d%s",
            workspace,
            len(steps),
            result.exit_code,
            " (timed out)" if result.timed_out else "",
        )
        return result

    def _proxy(self) -> Proxy | None:
        """The engine's egress proxy (network `proxy`), started or replaced when needed."""
        return self.egress.ensure(self.containers.client) if self.egress is not None else None

    def _run_environment(self, proxy: Proxy | None, label: str, grant: EgressGrant) -> dict[str, str]:
        """The exec's environment on top of the container's: the proxy with this run's signed grant."""
        environment: dict[str, str] = {}
        if self.index_url and self.containers.options.network != "none":
            environment["PIP_INDEX_URL"] = self.index_url
            parts = urlsplit(self.index_url)
            if parts.scheme == "http" and parts.hostname:  # an internal mirror, trusted as given
                environment["PIP_TRUSTED_HOST"] = parts.hostname
        if proxy is None:
            return environment
        run_grant = Grant(
            label=label,
            expires=time.time() + self.timeout + GRACE_SECONDS,
            hosts=grant.hosts,
            private_hosts=grant.private_hosts,
            max_requests=self.egress_requests,
            max_bytes=self.egress_bytes,
        )
        url = f"http://{sign(proxy.secret.encode(), run_grant)}@127.0.0.1:{RELAY_PORT}"
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            environment[name] = url
        environment["NO_PROXY"] = environment["no_proxy"] = ""
        return environment

    def _audited(
        self, result: CodeResult, proxy: Proxy, label: str, started: float, grant: EgressGrant
    ) -> CodeResult:
        """`result` with the run's network audit from the proxy's log (a note in the output on a cap)."""
        assert self.egress is not None
        try:
            log = self.egress.log_since(self.containers.client, proxy, started)
        except docker.errors.APIError as exc:  # the proxy was replaced during the run
            logger.warning("egress proxy %s: no log for %s: %s", proxy.name, label, exc)
            log = ""
        report = audit.report(
            audit.parse(log, label),
            people_may_open_private=grant.people_may_open_private,
            max_bytes=self.egress_bytes,
        )
        output = result.output
        if report.notes:
            output = "\n".join([output.rstrip("\n"), *report.notes]) if output else "\n".join(report.notes)
        return result.model_copy(update={"egress": report, "output": output})

    def _run_steps(
        self, workspace: str, steps: Sequence[Step], proxy: Proxy | None, environment: dict[str, str]
    ) -> Exec:
        """By the container's supervisor (pre-imported, no exec), else by an exec of the wrapper.

        Either way every process of the run is dead at the end, and a fresh supervisor is then started
        in the background for the next run (see supervisor.py for why never the same one).
        """
        seconds = self.timeout + GRACE_SECONDS
        self.settle()
        egress = proxy.name if proxy is not None else None
        claims = self.containers.claims
        container = self.containers.acquire(workspace, seconds, egress)
        token = secrets.token_hex(16)
        done = self._supervised(workspace, container, steps, environment, token)
        if done is None:  # in the same container: acquiring it again could replace a young one
            args, payload = self._run_args(steps)
            done = self._exec(
                workspace, args, payload, seconds, proxy=proxy, environment=environment, container=container
            )
        reported = not done.deadline_passed and done.control.data.startswith(b"AGENTBOT ")
        claimed = self.containers.claims > claims
        self._in_background(
            lambda: self.containers.start_supervisor(container, token) if reported else None,
            lambda: self.containers.fill_pool(egress) if claimed else None,
        )
        return done

    def _supervised(
        self, workspace: str, container: str, steps: Sequence[Step], environment: dict[str, str], token: str
    ) -> Exec | None:
        """Run `steps` by the supervisor through the broker; None when it has none ready."""
        seconds = self.timeout + GRACE_SECONDS
        nonce = secrets.token_hex(8)
        request = {
            "steps": [[step.filename, step.argv[0], step.content] for step in steps],
            "timeout": self.timeout,
            "limit": self.artifact_limit,
            "max": MAX_ARTIFACTS,
            "env": environment,
        }
        message = {"op": "run", "nonce": nonce, "next": token, "wait": SUPERVISOR_WAIT, "seconds": seconds}
        message["request"] = request
        output = Capped(self.output_limit)
        answer = Answer(nonce, Capped(self.artifact_limit + CONTROL_SLACK))
        marked = Marked(output, f"\n{nonce}\n".encode())
        deadline = time.monotonic() + seconds + SUPERVISOR_WAIT
        try:
            with self.containers.attach(container, output=True) as raw:
                passed = converse(raw, json.dumps(message).encode(), deadline, output=marked, answer=answer)
        except docker.errors.APIError as exc:  # the container ended after `acquire`: the exec path copes
            logger.warning("workspace %s: no attach (%s)", workspace, exc)
            return None
        if answer.status == "none" and not passed:
            return None
        if passed or answer.status != "ran":  # killed or stopped by the code: only the end of it is sure
            logger.warning("workspace %s: supervisor did not report; retiring its container", workspace)
            self.containers.retire(container, workspace, save=True)
        return Exec(output=output, control=answer.report, exit_code=1, deadline_passed=passed)

    def _in_background(self, *calls: Callable[[], object]) -> None:
        """The next supervisor and a pool container in place of a claimed one: in a thread, so that
        neither is on this run's way to its result (the next run waits for it, see `settle`)."""

        def work() -> None:
            for call in calls:
                try:
                    call()
                except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
                    logger.info("sandbox: background start failed: %s", exc)

        self._starting = threading.Thread(target=work, name="agentbot-sandbox-background", daemon=True)
        self._starting.start()

    def settle(self) -> None:
        """Let the background work of the last run finish: before the next run talks to the engine, and
        before a job's process ends (an RQ job horse leaves by `os._exit`, which would cut it short)."""
        if self._starting is not None:
            self._starting.join(timeout=PUT_SECONDS)
            self._starting = None

    def _run_args(self, steps: Sequence[Step]) -> tuple[list[str], bytes]:
        """The wrapper's `run` arguments and stdin: the code as arguments, or a tar when it will not fit."""
        args = ["run", f"{self.timeout:g}", str(int(self.timeout * 1000)), str(self.artifact_limit)]
        args += [str(MAX_ARTIFACTS), str(len(steps))]
        for step in steps:
            command, *_ = step.argv
            args += [step.filename, command]
        texts = [step.content for step in steps]
        if all(fits_argument(text) for text in texts):  # no tar to unpack: the common, fast path
            return [*args, *texts], b""
        return args, tar([text.encode() for text in texts])

    def put_files(self, workspace: str, files: Sequence[InputFile]) -> None:
        """Place `files` in the workspace; raises `SandboxError` for a name that would leave it."""
        check_slug(workspace)
        try:
            names = [safe_filename(file.name) for file in files]
        except PlanError as exc:
            message = f"Could not place a file in the workspace: {exc}."
            raise SandboxError(message, user_message=message) from exc
        with self.containers.translated(workspace):
            files_tar = tar([f.content for f in files])
            done = self._exec(workspace, ["put", *names], files_tar, PUT_SECONDS, proxy=self._proxy())
        if done.exit_code != 0 or done.deadline_passed:
            reason = done.output.data.decode(errors="replace").strip() or f"exit code {done.exit_code}"
            message = f"Could not place the files in the workspace: {reason}."
            raise SandboxError(message, user_message=message)
        logger.info("workspace %s: placed %d file(s)", workspace, len(files))

    def remove_workspace(self, workspace: str) -> None:
        """Remove the conversation's container, its saved workspace and its stamp."""
        check_slug(workspace)
        with self.containers.translated(workspace):
            self.containers.remove_workspace(workspace)
        logger.info("workspace %s: removed", workspace)

    # -- maintenance -----------------------------------------------------------------------------

    def reap(self) -> int:
        """Retire every sandbox container past its expiry (or stopped); returns how many."""
        with self.containers.translated("-"):
            return self.containers.reap()

    def housekeeping(self) -> None:
        """The periodic round of every worker (see housekeeping.py): retire expired containers, fill
        the warm pool."""
        with self.containers.translated("-"):
            reaped = self.containers.reap()
            started = self.containers.fill_pool(self._egress_name()) if self.containers.options.pool else 0
        if reaped or started:
            logger.info(
                "sandbox housekeeping: retired %d container(s), started %d for the pool", reaped, started
            )

    def _egress_name(self) -> str | None:
        proxy = self._proxy()
        return proxy.name if proxy is not None else None

    def cleanup_idle(self) -> int:
        """Remove workspaces whose last run is older than `workspace_ttl`; returns how many.

        Also removes egress proxies of older configurations that no sandbox container uses any more.
        """
        with self.containers.translated("-"):
            idle = self.containers.idle_workspaces(self.workspace_ttl)
            for workspace in idle:
                self.remove_workspace(workspace)
            if self.egress is not None:
                current = self.egress.ensure(self.containers.client).name
                in_use = self.containers.egress_in_use()
                self.egress.retire_others(self.containers.client, current, in_use)
        return len(idle)

    # -- one exec of the wrapper -----------------------------------------------------------------

    def _exec(
        self,
        workspace: str,
        args: list[str],
        payload: bytes,
        seconds: float,
        *,
        proxy: Proxy | None = None,
        environment: dict[str, str] | None = None,
        container: str | None = None,
    ) -> Exec:
        """Run the wrapper with `args` in the workspace's container (`container` when given, else the
        one `acquire` finds or starts), `payload` on its stdin."""
        egress = proxy.name if proxy is not None else None
        container, exec_id = self._create_exec(
            workspace, args, payload, egress, environment, container=container
        )
        output, control = Capped(self.output_limit), Capped(self.artifact_limit + CONTROL_SLACK)
        done = stream(
            self.containers.api, exec_id, payload, time.monotonic() + seconds, output=output, control=control
        )
        is_run = args[0] == "run"
        reported = is_run and done.control.data.startswith(b"AGENTBOT ")
        if not done.deadline_passed and not reported:  # the report has it; saves a round trip
            done.exit_code = self.containers.exit_code(exec_id)
        if done.deadline_passed or (is_run and not reported):
            # The wrapper did not finish its own cleanup: only the container's end is sure to.
            logger.warning("workspace %s: wrapper did not report; retiring its container", workspace)
            self.containers.retire(container, workspace, save=True)
        return done

    def _create_exec(
        self,
        workspace: str,
        args: list[str],
        payload: bytes,
        egress: str | None,
        environment: dict[str, str] | None,
        *,
        container: str | None = None,
    ) -> tuple[str, str]:
        """A container with time for a run and an exec in it; the container may end just before."""
        seconds = self.timeout + GRACE_SECONDS

        def exec_in(container: str) -> str:
            return self.containers.create_exec(container, args, stdin=bool(payload), environment=environment)

        container = container or self.containers.acquire(workspace, seconds, egress)
        try:
            return container, exec_in(container)
        except docker.errors.APIError as exc:  # the container ended between inspect and exec
            logger.warning("workspace %s: container gone (%s), starting another", workspace, exc)
            self.containers.retire(container, workspace, save=False)
            container = self.containers.acquire(workspace, seconds, egress)
            return container, exec_in(container)

    # -- the result ------------------------------------------------------------------------------

    def _result(self, workspace: str, done: Exec) -> CodeResult:
        report = parse_report(bytes(done.control.data)) if not done.control.truncated else None
        notes: list[str] = []
        artifacts: tuple[Artifact, ...] = ()
        if done.deadline_passed:
            exit_code, timed_out = TIMEOUT_EXIT_CODE, True
        elif report is None:
            exit_code, timed_out = done.exit_code, False
            notes.append("[agentbot] the sandbox did not report the files of this run; it was restarted.")
        else:
            exit_code, timed_out = report.exit_code, report.timed_out
            artifacts, notes = self._artifacts(report)
        if timed_out:
            exit_code = TIMEOUT_EXIT_CODE
        if done.output.truncated:
            logger.info("workspace %s: output truncated at %d bytes", workspace, self.output_limit)
        return CodeResult(
            exit_code=exit_code,
            output=render(done.output, timed_out, self.timeout, notes),
            artifacts=artifacts,
            timed_out=timed_out,
            output_truncated=done.output.truncated,
        )

    def _artifacts(self, report: Report) -> tuple[tuple[Artifact, ...], list[str]]:
        chosen, notes = select(report.changed, self.artifact_limit)
        sizes = dict(report.changed)
        artifacts = []
        for name in chosen:
            content = report.files.get(name)
            if content is None or len(content) != sizes[name]:
                notes.append(left_out(name, sizes[name], "it could not be read"))
            else:
                artifacts.append(make_artifact(name, content))
        return tuple(artifacts), notes
