"""Sandbox containers on the engine: names and labels, hardened config, start, retire, save, workspaces."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import docker
import docker.errors
import requests.exceptions

from agentbot.errors import EngineDownError, SandboxError
from agentbot.sandbox.docker.supervisor import TOKEN_VARIABLE
from agentbot.sandbox.egress.proxy import RELAY_PORT, SOCKET_DIR, SOCKET_PATH

logger = logging.getLogger(__name__)

ROLE_LABEL = "agentbot.role"
WORKSPACE_LABEL = "agentbot.workspace"
EXPIRES_LABEL = "agentbot.expires"
LAST_USED_LABEL = "agentbot.last-used"
EGRESS_LABEL = "agentbot.egress"  # the proxy whose socket the container's relay forwards to
POOL_LABEL = "agentbot.pool"  # a container started for the warm pool (unclaimed while named after pool-*)
VOLUME_LABEL = "agentbot.volume"  # on a stamp: the volume that holds the workspace, when not its own
POOL_PREFIX = "pool-"  # the workspace name of an unclaimed pool container
SANDBOX_ROLE = "sandbox"
WORKSPACE_ROLE = "workspace"
CODE_USER = "1000:1000"
KEEPER_USER = "65534:65534"  # PID 1 and the broker: not the code's uid, so `kill -9 -1` spares them
SAVE_USER = "0:0"  # with every capability dropped: can write the root-owned /keep, nothing more
WORKSPACE_DIR = "/workspace"
PACKAGES_DIR = f"{WORKSPACE_DIR}/.local"  # `pip install` lands here (PIP_USER): saved with the workspace
TMP_SIZE = 64 * 1024 * 1024
START_SECONDS = 60.0  # a container created this recently and not running yet is still being started
PING_SECONDS = 5  # the ping that tells an engine that is down from one that refused a call
LIFETIME_MARGIN = 900.0  # PID 1 outlives `warm_seconds` by this much, then the container ends itself
SLUG = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SIZE = re.compile(r"(?i)^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$")

SUPERVISOR = "/opt/agentbot/supervisor.py"  # supervisor.py in the image: the broker and the supervisors

# The in-container program every exec runs (`bash -c WRAPPER agentbot <mode> <args>...`).
WRAPPER = resources.files(__package__).joinpath("wrapper.sh").read_text(encoding="utf-8")


def parse_size(text: str) -> int:
    """Bytes for a Docker-style size such as `512m` or `1g` (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "bkmg".index(unit or "b"))


def check_slug(workspace: str) -> None:
    if not SLUG.fullmatch(workspace):
        raise ValueError(f"workspace must be a slug of letters, digits, '_' and '-', not {workspace!r}")


def sandbox_name(workspace: str) -> str:
    return f"agentbot-sbx-{workspace}"


def stamp_name(workspace: str) -> str:
    return f"agentbot-ws-{workspace}"


def volume_name(workspace: str) -> str:
    return f"agentbot-ws-{workspace}"


@dataclass(frozen=True)
class ContainerOptions:
    """What every sandbox container gets: its image, network and limits, and how long it stays warm."""

    image: str = "agentbot-sandbox:latest"
    network: str = "none"
    preimport: tuple[str, ...] = ("numpy", "pandas", "matplotlib.pyplot")
    pool: int = 0  # unassigned warm containers kept ready (the executor's setting: AGENTBOT_SANDBOX_POOL)
    memory: int = 512 * 1024 * 1024
    cpus: float = 1.0
    pids: int = 128
    disk: int = 256 * 1024 * 1024
    warm_seconds: float = 600.0


def workspace_of(info: dict[str, Any]) -> str:
    """The workspace of a listed sandbox container: from its name (a claimed pool container keeps the
    labels it was created with), else from its label."""
    for name in info.get("Names") or []:
        if name.startswith("/" + sandbox_name("")):
            return str(name[len(sandbox_name("")) + 1 :])
    return str((info.get("Labels") or {}).get(WORKSPACE_LABEL, "?"))


def unclaimed(info: dict[str, Any]) -> bool:
    """Whether a listed container is a pool container nobody has claimed (nor is retiring): claiming
    renames it, and its labels (fixed at creation) keep the pool name."""
    labels = info.get("Labels") or {}
    own_name = "/" + sandbox_name(labels.get(WORKSPACE_LABEL, ""))
    return POOL_LABEL in labels and own_name in (info.get("Names") or [])


def container_config(
    api: docker.APIClient,
    options: ContainerOptions,
    workspace: str,
    egress: str | None = None,
    volume: str | None = None,
    *,
    pool: bool = False,
) -> dict[str, Any]:
    """`create_container` arguments for the workspace's hardened, self-ending sandbox container.

    With `egress` (network `proxy`), the container has no network but its loopback, and a relay that
    the code cannot signal forwards 127.0.0.1:3128 to that proxy's socket. `volume` holds the saved
    workspace (default: the workspace's own).
    """
    expires = time.time() + options.warm_seconds
    labels = {ROLE_LABEL: SANDBOX_ROLE, WORKSPACE_LABEL: workspace, EXPIRES_LABEL: f"{expires:.0f}"}
    if egress is not None:
        labels[EGRESS_LABEL] = egress
    if pool:
        labels[POOL_LABEL] = "1"
    return {
        "image": options.image,
        "name": sandbox_name(workspace),
        "command": keeper_command(options.warm_seconds + LIFETIME_MARGIN, relay=egress is not None),
        "user": KEEPER_USER,
        "working_dir": WORKSPACE_DIR,
        "hostname": "sandbox",
        "environment": environment(options.cpus),
        "labels": labels,
        "network_disabled": options.network == "none",
        "host_config": host_config(api, options, workspace, egress, volume),
        # the broker reads runs from stdin (attach): kept open between attaches (detach=True means
        # StdinOnce false in docker-py), and the code's output is never kept in a log
        "stdin_open": True,
        "detach": True,
    }


def keeper_command(seconds: float, *, relay: bool) -> list[str]:
    """PID 1's child (as `nobody`): the broker, which ends the container, and the egress relay if any."""
    broker = ["python3", "-I", "-S", SUPERVISOR, "broker", f"{seconds:.0f}"]  # -I: nothing from /workspace
    if not relay:
        return broker
    socat = f"socat TCP-LISTEN:{RELAY_PORT},bind=127.0.0.1,reuseaddr,fork,nodelay UNIX-CONNECT:{SOCKET_PATH}"
    return ["sh", "-c", f"{socat} & exec {' '.join(broker)}"]


def host_config(
    api: docker.APIClient,
    options: ContainerOptions,
    workspace: str,
    egress: str | None = None,
    volume: str | None = None,
) -> dict[str, Any]:
    """The hardening: no privileges, read-only root, tmpfs workspace, limits, the saved workspace at /keep."""
    # tmpfs pages count against the memory cgroup, so the code keeps `memory` for itself
    memory = options.memory + options.disk + TMP_SIZE
    binds = {volume or volume_name(workspace): {"bind": "/keep", "mode": "rw"}}
    if egress is not None:
        binds[egress] = {"bind": SOCKET_DIR, "mode": "ro"}
    config: dict[str, Any] = api.create_host_config(
        init=True,
        auto_remove=True,
        network_mode="none" if options.network == "proxy" else options.network,
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit=memory,
        memswap_limit=memory,
        nano_cpus=int(options.cpus * 1e9),
        pids_limit=options.pids,
        tmpfs={
            WORKSPACE_DIR: f"rw,nosuid,nodev,exec,size={options.disk},uid=1000,gid=1000,mode=0755",
            "/tmp": f"rw,nosuid,nodev,exec,size={TMP_SIZE},mode=1777",
        },
        binds=binds,
        ulimits=[docker.types.Ulimit(name="core", soft=0, hard=0)],
        log_config=docker.types.LogConfig(type="none"),
    )
    return config


def environment(cpus: float) -> dict[str, str]:
    """The container's environment, from scratch: the code never sees the worker's (API keys, tokens)."""
    threads = str(max(1, int(cpus)))  # BLAS threads spinning past the CPU quota slow numpy down
    return {
        "OPENBLAS_NUM_THREADS": threads,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PATH": f"{PACKAGES_DIR}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUNBUFFERED": "1",  # stdout and stderr then interleave in the order they were written
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": "/opt/agentbot/mpl",
        "MPLBACKEND": "module://agentbot_backend",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        # `pip install x` goes into the workspace (and is saved with it); its user site comes before the
        # image's packages on sys.path, so what people installed wins
        "PYTHONUSERBASE": PACKAGES_DIR,
        "PIP_USER": "1",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PIP_RETRIES": "1",  # a host the proxy refuses fails in a second, not after pip's five retries
        "PIP_DEFAULT_TIMEOUT": "30",
    }


def expiry(labels: dict[str, str]) -> float:
    """When a sandbox container is due to retire, from its label (0 when unreadable)."""
    try:
        return float(labels.get(EXPIRES_LABEL, 0))
    except ValueError:
        return 0.0


def docker_client(url: str | None, *, timeout: int) -> docker.DockerClient:
    """A client of the engine at `url` (None: the environment's, as `docker.from_env` finds it)."""
    return docker.DockerClient(base_url=url, timeout=timeout) if url else docker.from_env(timeout=timeout)


class Containers:
    """The engine side of the sandbox: one warm container per workspace, its saved volume and its stamp."""

    def __init__(
        self,
        options: ContainerOptions,
        *,
        client: docker.DockerClient | None = None,
        base_url: str | None = None,
    ) -> None:
        self.options = options
        self._given_client = client
        self._client = client
        self._base_url = base_url
        self.claims = 0  # pool containers this process claimed (each is replaced in the background)

    # -- the client and its errors ---------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client, made on first use (a constructor never talks to the engine)."""
        if self._client is None:
            self._client = docker_client(self._base_url, timeout=30)
        return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    def _reconnect(self) -> None:
        """Drop a client we made, so the next call connects again: the engine may be back by then."""
        if self._client is not None and self._client is not self._given_client:
            self._client.close()
            self._client = None

    @contextlib.contextmanager
    def translated(self, workspace: str) -> Iterator[None]:
        """Engine errors become one `SandboxError` with words a user understands."""
        try:
            yield
        except docker.errors.ImageNotFound as exc:
            image = self.options.image
            logger.error("workspace %s: sandbox image %s is missing", workspace, image)
            raise SandboxError(
                f"sandbox image {image} is missing",
                user_message=f"The sandbox image {image} is missing: "
                "build it with scripts/build-sandbox-image",
            ) from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            self._reconnect()
            if not self.answers():  # whoever called says so, once (the thread, the worker's start)
                logger.debug("workspace %s: docker engine not reachable: %s", workspace, str(exc))
                raise EngineDownError(
                    f"docker engine down: {exc}",
                    user_message="The Docker engine that runs the code sandbox is not reachable; "
                    "try again once it is back.",
                ) from exc
            logger.error("workspace %s: docker engine failed: %s", workspace, str(exc))  # no traceback kept
            raise SandboxError(
                f"docker engine failed: {exc}",
                user_message="The Docker engine that runs the code sandbox refused the run; "
                "try again in a moment.",
            ) from exc

    def answers(self) -> bool:
        """Whether the engine answers a ping now (a short one, on a client of its own)."""
        try:
            client = docker_client(self._base_url, timeout=PING_SECONDS)
        except docker.errors.DockerException:
            return False
        try:
            return bool(client.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            return False
        finally:
            client.close()

    # -- execs -----------------------------------------------------------------------------------

    def create_exec(
        self,
        container: str,
        args: list[str],
        *,
        user: str = CODE_USER,
        stdin: bool = False,
        environment: dict[str, str] | None = None,
    ) -> str:
        """Create (not start) an exec of the wrapper with `args` in `container`; returns its id."""
        created = self.api.exec_create(
            container,
            ["bash", "-c", WRAPPER, "agentbot", *args],
            stdin=stdin,
            user=user,
            workdir=WORKSPACE_DIR,
            environment=environment,
        )
        exec_id: str = created["Id"]
        return exec_id

    def run_exec(self, container: str, args: list[str], *, user: str = CODE_USER) -> int:
        """Run the wrapper with `args` to its end (no stdin, output dropped); returns its exit code."""
        exec_id = self.create_exec(container, args, user=user)
        self.api.exec_start(exec_id)
        return self.exit_code(exec_id)

    def exit_code(self, exec_id: str) -> int:
        return int(self.api.exec_inspect(exec_id).get("ExitCode") or 0)

    # -- the warm container ----------------------------------------------------------------------

    def acquire(self, workspace: str, seconds: float, egress: str | None = None) -> str:
        """The id of the workspace's running container with `seconds` left, starting one if needed.

        A container relaying to another proxy than `egress` (the configuration changed) is replaced.
        """
        try:
            info = self.api.inspect_container(sandbox_name(workspace))
        except docker.errors.NotFound:
            claimed = self.claim(workspace, seconds, egress) if self.options.pool else None
            return claimed or self.start(workspace, egress)
        labels = info["Config"].get("Labels") or {}
        running = bool(info["State"].get("Running"))
        if running and expiry(labels) > time.time() + seconds and labels.get(EGRESS_LABEL) == egress:
            container_id: str = info["Id"]
            return container_id
        self.retire(info["Id"], workspace, save=running)
        return self.start(workspace, egress)

    def start(self, workspace: str, egress: str | None = None, *, pool: bool = False) -> str:
        """Start the workspace's container and restore its saved files into the tmpfs.

        A `pool` container gets no stamp but a supervisor at once; any other's first run goes by exec
        (no waiting for imports), and the next run's supervisor starts after it.
        """
        if not pool:
            self.reap()
        volume = self.volume_of(workspace)
        self._ensure_volume(workspace, volume)
        if not pool:
            self._stamp(workspace, volume)
        config = container_config(self.api, self.options, workspace, egress, volume, pool=pool)
        try:
            container = self.api.create_container(**config)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            logger.info("workspace %s: another worker started its container", workspace)
            existing: str = self.api.inspect_container(sandbox_name(workspace))["Id"]
            return existing
        container_id: str = container["Id"]
        self.api.start(container_id)
        if self.run_exec(container_id, ["restore"]):
            logger.error("workspace %s: restoring the saved workspace failed", workspace)
        if pool:
            token = secrets.token_hex(16)
            self.expect_supervisor(container_id, token)
            self.start_supervisor(container_id, token)
        logger.info("workspace %s: started sandbox container %s", workspace, container_id[:12])
        return container_id

    # -- supervisors (see supervisor.py) ---------------------------------------------------------

    @contextlib.contextmanager
    def attach(self, container: str, *, output: bool) -> Iterator[socket.socket]:
        """The container's stdio through the API: stdin to the broker, and its answers when `output`."""
        params = {"stdin": 1, "stdout": int(output), "stderr": int(output), "stream": 1}
        sock = self.api.attach_socket(container, params=params)
        raw: socket.socket = getattr(sock, "_sock", sock)
        try:
            yield raw
        finally:
            sock.close()
            raw.close()

    def expect_supervisor(self, container: str, token: str) -> None:
        """Tell the broker the token of the supervisor about to start (no other connection is taken)."""
        with self.attach(container, output=False) as raw:
            raw.sendall(b"\n" + json.dumps({"op": "expect", "token": token}).encode() + b"\n")

    def start_supervisor(self, container: str, token: str) -> None:
        """Start a supervisor (detached) that pre-imports the configured modules and then serves one run."""
        modules = ",".join(self.options.preimport)
        created = self.api.exec_create(
            container,
            ["python3", SUPERVISOR, "serve", modules],
            user=CODE_USER,
            workdir=WORKSPACE_DIR,
            environment={TOKEN_VARIABLE: token},
        )
        self.api.exec_start(created["Id"], detach=True)

    def retire(self, container: str, workspace: str, *, save: bool) -> None:
        """Save the workspace into its volume (when asked and possible), then remove the container."""
        try:  # claim it first: of two workers retiring one container, only one saves
            self.api.rename(container, f"agentbot-retiring-{container[:12]}-{time.time_ns()}")
        except docker.errors.APIError:
            return
        if save:
            self._save(container, workspace)
        self.remove_container(container)
        logger.info("workspace %s: retired container %s", workspace, container[:12])

    def _save(self, container: str, workspace: str) -> None:
        for mode, user in (("prepare", CODE_USER), ("save", SAVE_USER)):
            try:
                code = self.run_exec(container, [mode], user=user)
            except docker.errors.APIError as exc:  # e.g. a fork bomb holds every pid
                logger.error("workspace %s: could not save the workspace: %s", workspace, exc)
                return
            if code:
                logger.error("workspace %s: %s exited with %s", workspace, mode, code)

    def remove_container(self, container: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            try:
                self.api.remove_container(container, force=True)
            except docker.errors.APIError as exc:
                # 409: auto_remove is already removing it; 500 "directory not empty": the engine's own
                # auto-remove raced ours (engine 20.10). Either way the container is on its way out, and
                # `reap()` retires any that lingers: not a reason to fail the run.
                if exc.status_code not in (409, 500):
                    raise
                logger.warning("container %s: removal left to the engine: %s", container[:12], exc)

    def egress_in_use(self) -> set[str]:
        """The proxies that sandbox containers relay to."""
        listed = self.api.containers(all=True, filters={"label": f"{ROLE_LABEL}={SANDBOX_ROLE}"})
        return {(info.get("Labels") or {}).get(EGRESS_LABEL, "") for info in listed} - {""}

    def reap(self) -> int:
        """Retire every sandbox container past its expiry (or stopped); returns how many."""
        now = time.time()
        reaped = 0
        listed = self.api.containers(all=True, filters={"label": f"{ROLE_LABEL}={SANDBOX_ROLE}"})
        for info in listed:
            labels = info.get("Labels") or {}
            running = info.get("State") == "running"
            if expiry(labels) > now and running:
                continue
            if info.get("State") == "created" and now - float(info.get("Created") or 0) < START_SECONDS:
                continue  # another worker is starting it right now
            if unclaimed(info):  # nothing to keep
                self.remove_workspace(workspace_of(info))
            else:
                self.retire(info["Id"], workspace_of(info), save=running)
            reaped += 1
        return reaped

    # -- the warm pool ---------------------------------------------------------------------------

    def pool(self, egress: str | None) -> list[dict[str, Any]]:
        """The unclaimed pool containers, running, that relay to `egress`, longest-lived first."""
        listed = self.api.containers(filters={"label": [f"{ROLE_LABEL}={SANDBOX_ROLE}", POOL_LABEL]})
        ready = [
            info
            for info in listed
            if unclaimed(info) and (info.get("Labels") or {}).get(EGRESS_LABEL) == egress
        ]
        return sorted(ready, key=lambda info: -expiry(info.get("Labels") or {}))

    def claim(self, workspace: str, seconds: float, egress: str | None) -> str | None:
        """A pool container renamed to be the workspace's, for a workspace never seen before; else None.

        The rename, by the pool name, is the claim: of two workers, one gets it. Labels and mounts cannot
        change after creation, so the container keeps its pool volume, and the workspace's stamp records
        that volume for every later container of the workspace.
        """
        if self._known(workspace):
            return None
        for info in self.pool(egress):
            if expiry(info.get("Labels") or {}) <= time.time() + seconds:
                continue
            try:
                self.api.rename(sandbox_name(workspace_of(info)), sandbox_name(workspace))
            except docker.errors.APIError:  # another worker claimed it first
                continue
            self._stamp(workspace, volume_name(workspace_of(info)))
            self.claims += 1
            logger.info("workspace %s: claimed pool container %s", workspace, info["Id"][:12])
            container_id: str = info["Id"]
            return container_id
        return None

    def fill_pool(self, egress: str | None) -> int:
        """Start pool containers up to the pool size, dropping any that relay to another proxy.

        Returns how many it started.
        """
        listed = self.api.containers(filters={"label": [f"{ROLE_LABEL}={SANDBOX_ROLE}", POOL_LABEL]})
        for info in listed:
            if unclaimed(info) and (info.get("Labels") or {}).get(EGRESS_LABEL) != egress:
                self.remove_workspace(workspace_of(info))
        missing = self.options.pool - len(self.pool(egress))
        for _ in range(missing):
            self.start(f"{POOL_PREFIX}{secrets.token_hex(6)}", egress, pool=True)
        return max(missing, 0)

    def _known(self, workspace: str) -> bool:
        """Whether the workspace has a stamp or a volume: then its files are elsewhere than in a pool."""
        try:
            self.api.inspect_container(stamp_name(workspace))
            return True
        except docker.errors.NotFound:
            pass
        try:
            self.api.inspect_volume(volume_name(workspace))
            return True
        except docker.errors.NotFound:
            return False

    # -- the saved workspace ---------------------------------------------------------------------

    def _ensure_volume(self, workspace: str, volume: str) -> None:
        labels = {ROLE_LABEL: WORKSPACE_ROLE, WORKSPACE_LABEL: workspace}
        self.api.create_volume(volume, labels=labels)  # no-op when it exists

    def volume_of(self, workspace: str) -> str:
        """The volume that holds the workspace: its own, or the pool volume its stamp names."""
        try:
            labels = self.api.inspect_container(stamp_name(workspace))["Config"].get("Labels") or {}
        except docker.errors.NotFound:
            return volume_name(workspace)
        return str(labels.get(VOLUME_LABEL) or volume_name(workspace))

    def _stamp(self, workspace: str, volume: str) -> None:
        """Record the last use (and the volume): a never-started container whose labels say when."""
        self.remove_container(stamp_name(workspace))
        labels = {
            ROLE_LABEL: WORKSPACE_ROLE,
            WORKSPACE_LABEL: workspace,
            LAST_USED_LABEL: f"{time.time():.0f}",
            VOLUME_LABEL: volume,
        }
        binds = {volume: {"bind": "/keep"}}
        with contextlib.suppress(docker.errors.APIError):  # a racing worker stamped it just now
            self.api.create_container(
                self.options.image,
                command=["true"],
                name=stamp_name(workspace),
                labels=labels,
                network_disabled=True,
                host_config=self.api.create_host_config(binds=binds),
            )

    def idle_workspaces(self, ttl: float) -> list[str]:
        """Workspaces with no running container and no use for `ttl` seconds (a claimed pool volume
        counts as its workspace's, which its stamp names)."""
        stamps = self.api.containers(
            all=True, filters={"label": [f"{ROLE_LABEL}={WORKSPACE_ROLE}", VOLUME_LABEL]}
        )
        owners = {
            labels[VOLUME_LABEL]: labels.get(WORKSPACE_LABEL, "")
            for labels in (info.get("Labels") or {} for info in stamps)
        }
        volumes = self.api.volumes(filters={"label": f"{ROLE_LABEL}={WORKSPACE_ROLE}"}).get("Volumes") or []
        names = {owners.get(v["Name"]) or (v.get("Labels") or {}).get(WORKSPACE_LABEL, "") for v in volumes}
        return sorted(name for name in names if SLUG.fullmatch(name) and self._idle(name, ttl))

    def _idle(self, workspace: str, ttl: float) -> bool:
        if self._is_running(sandbox_name(workspace)):
            return False
        try:
            labels = self.api.inspect_container(stamp_name(workspace))["Config"].get("Labels") or {}
            last_used = float(labels.get(LAST_USED_LABEL, 0))
        except docker.errors.NotFound:
            last_used = 0.0
        return time.time() - last_used > ttl

    def _is_running(self, name: str) -> bool:
        try:
            return bool(self.api.inspect_container(name)["State"].get("Running"))
        except docker.errors.NotFound:
            return False

    def remove_workspace(self, workspace: str) -> None:
        """Remove the workspace's container, its saved volume and its stamp."""
        volume = self.volume_of(workspace)
        for name in (sandbox_name(workspace), stamp_name(workspace)):
            self.remove_container(name)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(volume).remove(force=True)
