"""The hardened Docker executor: code runs in a warm per-conversation container, files live on the engine.

Design (measured on engine 20.10, 2 cores; see bench/sandbox_vs_autogen.py):

* **Warm container per conversation, one `docker exec` per run.** A hardened `docker run` costs
  ~250 ms, an exec ~55 ms, which is what AG2's `DockerCommandLineCodeExecutor` pays per block. So the
  first run of a conversation starts a container `agentbot-sbx-<workspace>` and later runs exec into it.
  The container is retired (workspace saved, container removed) after `warm_seconds`; any run that
  starts a container first reaps expired ones of every conversation (`reap()` does it on demand).
* **Hardened container.** No network unless configured, memory/CPU/pids limits, read-only root, tmpfs
  for /tmp and the workspace, all capabilities dropped, no-new-privileges, an environment built from
  scratch (never the worker's), tini as PID 1. PID 1 runs as `nobody` and user code as 1000:1000, so
  the code can neither signal PID 1 nor the keep-alive; the container's own command is a `sleep` of
  `warm_seconds` plus a margin, so even if every worker dies the container stops and (`auto_remove`)
  disappears by itself.
* **Hard time limit.** Inside the exec the steps run under `timeout -s KILL`, then the wrapper sends
  SIGKILL to every process of the sandbox user (`kill -9 -1`: setsid children and daemons too, as the
  kernel walks all processes of the uid). If the wrapper itself does not answer by the deadline plus
  a grace (the code killed or stopped it), the worker retires the whole container.
* **Output capped while it streams.** The exec's multiplexed stream is read frame by frame from the
  socket; stdout (the code's stdout and stderr, merged in order) keeps at most `output_limit` bytes and
  the rest is drained and dropped, so the worker's memory is bounded whatever the code prints. The
  exec's stderr carries the wrapper's report (exit code, changed files, a tar of the chosen artifacts),
  capped too.
* **Workspaces with a hard size limit and no host path.** The live workspace is a tmpfs of
  `disk` bytes (a real ENOSPC at the limit; a named volume on ext4 has no per-volume quota, so the code
  could fill the engine's disk). It is saved into the named volume `agentbot-ws-<workspace>` (mounted
  at /keep, owned by root, read-only to the code) when the container is retired, and restored from it
  when the next container starts. The save runs as uid 0 *without any capability* (our own `cp`, never
  user code); the code's uid cannot write /keep. Volume labels cannot change after creation, so the
  last-used time lives in the label of a never-started "stamp" container `agentbot-ws-<workspace>`,
  replaced whenever a container starts; `cleanup_idle()` removes workspaces unused for `workspace_ttl`.
  Trade-off: changes since the last save are lost if the engine itself dies while a container is warm.
* **Measured** (median of 20, same engine and image, machine shared with other jobs): print(1) 64-71 ms
  vs AG2's 63-67 ms (1.01-1.06x); a matplotlib chart with plt.show() 495-520 ms vs 537-586 ms
  (0.86-0.97x). The wrapper costs ~5 ms around the code: no tar, no temp dir and no sort process
  on the common path (code is passed as arguments, the listings are compared in a bash map).
  A 1-CPU limit costs numpy/matplotlib ~40 ms, so BLAS threads are pinned to the CPU limit.
* **Files in and code in**: code as exec arguments (a tar on the exec's stdin when it is over 100 kB),
  files as a tar on stdin; the wrapper writes each after checking the path for symlinks (`realpath`
  when there is one), so a symlink in the workspace cannot lead a write outside it.

One run of a conversation at a time is the job queue's guarantee (`JobQueue`); this executor does not
lock. Errors of the engine are translated into `SandboxError` at this boundary.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import socket
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests.exceptions

from agentbot.conversation.code import Artifact, CodeBlock, CodeResult, EgressGrant, InputFile
from agentbot.errors import SandboxError
from agentbot.sandbox.artifacts import MAX_ARTIFACTS, left_out, make_artifact, select
from agentbot.sandbox.plan import PlanError, plan_run, safe_filename
from agentbot.settings import Settings

logger = logging.getLogger(__name__)

TIMEOUT_EXIT_CODE = 124  # what coreutils `timeout` and AutoGen report
ROLE_LABEL = "agentbot.role"
WORKSPACE_LABEL = "agentbot.workspace"
EXPIRES_LABEL = "agentbot.expires"
LAST_USED_LABEL = "agentbot.last-used"
SANDBOX_ROLE = "sandbox"
WORKSPACE_ROLE = "workspace"
CODE_USER = "1000:1000"
KEEPER_USER = "65534:65534"  # PID 1 and its sleep: not the code's uid, so `kill -9 -1` spares them
SAVE_USER = "0:0"  # with every capability dropped: can write the root-owned /keep, nothing more
WORKSPACE_DIR = "/workspace"
TMP_SIZE = 64 * 1024 * 1024
GRACE_SECONDS = 5.0  # wrapper start, listing and artifact tar on top of the code's own time limit
LIFETIME_MARGIN = 900.0  # PID 1 outlives `warm_seconds` by this much, then the container ends itself
_SLUG = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SIZE = re.compile(r"(?i)^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$")
_CHUNK = 65_536
_CONTROL_SLACK = 2_000_000  # listing and tar headers around the artifacts in the wrapper's report
_LISTING_MAX = 1000

# The in-container side of every exec (bash, coreutils, findutils and tar are in the image).
# fd 1 is what people see; fd 3 (the exec's stderr) is the report the worker parses.
_WRAPPER = r"""
set -u
umask 022
exec 3>&2 2>&1
W=/workspace
D=
trap '[ -z "$D" ] || rm -rf "$D"' EXIT
declare -A seen=()

scratch() { [ -n "$D" ] || D=$(mktemp -d /tmp/.agentbot-run.XXXXXX) || exit 70; }

receive() {  # a tar on stdin with files 0, 1, 2...
    scratch
    tar -x -C "$D" -f - --no-same-owner --no-same-permissions 2>/dev/null \
        || { echo "agentbot: the sandbox could not receive the files"; exit 70; }
}

resolve() {  # resolve <name>: sets target, never a path out of the workspace through a symlink
    local prefix=$W part rest=$1
    target=$W/$1
    while [ "$rest" != "${rest#*/}" ]; do  # a symlink on the way? (builtins only: no fork when none)
        part=${rest%%/*}; rest=${rest#*/}; prefix=$prefix/$part
        [ -L "$prefix" ] && break
    done
    if [ -L "$prefix" ] || [ -L "$target" ]; then
        target=$(realpath -m -- "$target") || target=/
    fi
    case "$target" in
        "$W"/*) ;;
        *) error="filename '$1' leads outside the workspace through a symlink"; return 1 ;;
    esac
    [ "$rest" = "$1" ] || mkdir -p -- "${target%/*}" 2>/dev/null
    true
}

place() {  # place <name> <text> | place <name> --file <payload index>
    resolve "$1" || return 1
    if [ "$2" = --file ]; then
        cat -- "$D/$3" 2>/dev/null > "$target"
    else
        printf '%s' "$2" 2>/dev/null > "$target"
    fi || { rm -f -- "$target" 2>/dev/null; error="cannot write '$1' in the workspace"; return 1; }
}

listing() { find "$W" -type f -printf '%P\t%T@\t%C@\t%s\0' 2>/dev/null; }

is_image() {
    case "${1,,}" in *.png|*.jpg|*.jpeg|*.gif|*.svg|*.webp|*.bmp|*.tif|*.tiff|*.ico) return 0 ;; esac
    return 1
}

report() {  # report <exit code> <timed out> <limit> <max>: header, changed files, a tar of the chosen
    local budget=$3 max=$4 count=0 listed=0 pass rec name size
    local -a images=() others=() chosen=()
    printf 'AGENTBOT %s %s\n' "$1" "$2" >&3
    if [ "${#seen[@]}" -gt 0 ]; then
        while IFS= read -r -d '' rec; do  # changed = not in the listing from before the run
            [ -z "${seen[$rec]+x}" ] || continue
            name=${rec%$'\t'*}; name=${name%$'\t'*}; name=${name%$'\t'*}
            case "/$name" in */.*|*/__pycache__/*) continue ;; esac
            if is_image "$name"; then images+=("$rec"); else others+=("$rec"); fi
        done < <(listing)
    fi
    # sorted by name as artifacts.changed_files does (a sort process only when there is something to sort)
    [ "${#images[@]}" -lt 2 ] || mapfile -d '' images < <(printf '%s\0' "${images[@]}" | LC_ALL=C sort -z)
    [ "${#others[@]}" -lt 2 ] || mapfile -d '' others < <(printf '%s\0' "${others[@]}" | LC_ALL=C sort -z)
    for rec in ${images[@]+"${images[@]}"} ${others[@]+"${others[@]}"}; do  # artifacts.select, greedy
        size=${rec##*$'\t'}; name=${rec%$'\t'*}; name=${name%$'\t'*}; name=${name%$'\t'*}
        [ "$listed" -lt LISTING_MAX ] || break
        listed=$((listed + 1))
        printf '%s\t%s\0' "$size" "$name" >&3
        if [ "$count" -lt "$max" ] && [ "$size" -le "$budget" ]; then
            chosen+=("$name"); budget=$((budget - size)); count=$((count + 1))
        fi
    done
    printf '\0' >&3
    if [ "$count" -gt 0 ]; then
        tar -c -f - -C "$W" --no-recursion --null --verbatim-files-from \
            -T <(printf '%s\0' "${chosen[@]}") >&3 2>/dev/null
    fi
}

run() {  # run <timeout> <timeout ms> <limit> <max> <n> (<name> <command>)*n [<text>*n, else a tar on stdin]
    local t=$1 t_ms=$2 limit=$3 max=$4 n=$5 i rc timed=0 start error= target rec
    local -a names=() commands=() steps=()
    shift 5
    for ((i = 0; i < n; i++)); do names+=("$1"); commands+=("$2"); shift 2; done
    [ $# -gt 0 ] || [ "$n" -eq 0 ] || receive
    for ((i = 0; i < n; i++)); do
        if [ $# -gt 0 ]; then place "${names[i]}" "$1"; else place "${names[i]}" --file "$i"; fi
        if [ $? -eq 0 ]; then
            steps+=("${commands[i]}" "${target#"$W"/}")
        elif [ "${error#cannot write}" != "$error" ]; then  # e.g. a full workspace: run it from /tmp
            echo "[agentbot] $error (is the workspace full?): running it without saving it."
            scratch
            if [ $# -gt 0 ]; then printf '%s' "$1" > "$D/$i"; fi
            steps+=("${commands[i]}" "$D/$i")
        else
            echo "Code not run: $error."
            report 1 0 "$limit" "$max"
            exit 1
        fi
        [ $# -eq 0 ] || shift
    done
    while IFS= read -r -d '' rec; do seen[$rec]=1; done < <(listing)
    seen[/]=1  # never empty, so the report knows a listing was taken
    start=${EPOCHREALTIME/./}
    if [ "$n" -eq 1 ]; then
        { timeout -s KILL "$t" "${steps[@]}" 2>&1 3>&- </dev/null; } 2>/dev/null
    else
        { timeout -s KILL "$t" bash -c 'while [ $# -gt 0 ]; do "$1" "$2" || exit; shift 2; done' \
            steps "${steps[@]}" 2>&1 3>&- </dev/null; } 2>/dev/null
    fi
    rc=$?
    if [ "$rc" -eq 137 ] && [ $(( (${EPOCHREALTIME/./} - start) / 1000 )) -ge $((t_ms - 50)) ]; then
        timed=1
    fi
    kill -9 -1 2>/dev/null  # every other process of this uid: setsid children, daemons, a fork bomb
    report "$rc" "$timed" "$limit" "$max"
    exit "$rc"
}

put() {  # put [<name>]... with the files as a tar on stdin
    local i=0 error= target
    receive
    while [ $# -gt 0 ]; do
        place "$1" --file "$i" || { echo "$error"; exit 65; }
        i=$((i + 1)); shift
    done
}

restore() {  # a new container: the saved workspace and matplotlib's prebuilt font cache
    local src=/keep/current
    [ -d "$src" ] || src=/keep/.old
    if [ -d "$src" ]; then cp -R --preserve=mode,timestamps -- "$src/." "$W/" || exit 71; fi
    mkdir -p /tmp/matplotlib && cp -R /opt/agentbot/mplconfig/. /tmp/matplotlib/ 2>/dev/null
    true
}

prepare() {  # before a save: no code left running, everything readable by the saver
    kill -9 -1 2>/dev/null
    chmod -R go+rX -- "$W" 2>/dev/null
    true
}

save() {  # as uid 0 without capabilities: copy the workspace into the volume, then swap it in
    local next=/keep/.next
    rm -rf "$next" && mkdir -m 755 "$next" || exit 72
    cp -R --preserve=mode,timestamps -- "$W/." "$next/" 2>/dev/null
    rm -rf /keep/.old
    if [ -d /keep/current ]; then mv /keep/current /keep/.old || exit 72; fi
    mv "$next" /keep/current && rm -rf /keep/.old
}

"$@"
""".replace("LISTING_MAX", str(_LISTING_MAX))


def parse_size(text: str) -> int:
    """Bytes for a Docker-style size such as `512m` or `1g` (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * 1024 ** "bkmg".index(unit or "b"))


@dataclass
class _Capped:
    """Bytes kept up to `limit`; the rest is counted and dropped."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[: max(room, 0)]
        self.truncated = self.truncated or len(chunk) > room


@dataclass(frozen=True)
class _Report:
    """What the wrapper said at the end of a run."""

    exit_code: int
    timed_out: bool
    changed: list[tuple[str, int]]
    files: dict[str, bytes]


@dataclass
class _Exec:
    """The outcome of one exec: output, the wrapper's report, and whether the deadline passed."""

    output: _Capped
    control: _Capped
    exit_code: int
    deadline_passed: bool


class DockerExecutor:
    """Runs code blocks in hardened, warm, per-conversation containers (see the module docstring)."""

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
        client: docker.DockerClient | None = None,
        base_url: str | None = None,
    ) -> None:
        self.image = image
        self.timeout = timeout
        self.network = network
        self.memory = parse_size(memory)
        self.cpus = cpus
        self.pids = pids
        self.disk = parse_size(disk)
        self.output_limit = output_limit
        self.artifact_limit = artifact_limit
        self.workspace_ttl = workspace_ttl
        self.warm_seconds = warm_seconds
        self._given_client = client
        self._client = client
        self._base_url = base_url

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerExecutor:
        return cls(
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
        )

    # -- the CodeExecutor port -------------------------------------------------------------------

    def run(
        self, workspace: str, blocks: Sequence[CodeBlock], *, grant: EgressGrant | None = None
    ) -> CodeResult:
        """Run `blocks` in order within one time limit, stopping at the first that fails."""
        _check_slug(workspace)
        try:
            steps = plan_run(blocks)
        except PlanError as exc:
            return CodeResult(exit_code=1, output=f"Code not run: {exc}.")
        args = ["run", f"{self.timeout:g}", str(int(self.timeout * 1000)), str(self.artifact_limit)]
        args += [str(MAX_ARTIFACTS), str(len(steps))]
        for step in steps:
            command, *_ = step.argv
            args += [step.filename, command]
        texts = [step.content for step in steps]
        if all(_fits_argument(text) for text in texts):  # no tar to unpack: the common, fast path
            args += texts
            payload = b""
        else:
            payload = _tar([text.encode() for text in texts])
        with self._translated(workspace):
            done = self._exec(workspace, args, payload, self.timeout + GRACE_SECONDS)
            result = self._result(workspace, done)
        logger.info(
            "workspace %s: ran %d block(s), exit code %d%s",
            workspace,
            len(steps),
            result.exit_code,
            " (timed out)" if result.timed_out else "",
        )
        return result

    def put_files(self, workspace: str, files: Sequence[InputFile]) -> None:
        """Place `files` in the workspace; raises `SandboxError` for a name that would leave it."""
        _check_slug(workspace)
        try:
            names = [safe_filename(file.name) for file in files]
        except PlanError as exc:
            message = f"Could not place a file in the workspace: {exc}."
            raise SandboxError(message, user_message=message) from exc
        with self._translated(workspace):
            done = self._exec(workspace, ["put", *names], _tar([f.content for f in files]), 60.0)
        if done.exit_code != 0 or done.deadline_passed:
            reason = done.output.data.decode(errors="replace").strip() or f"exit code {done.exit_code}"
            message = f"Could not place the files in the workspace: {reason}."
            raise SandboxError(message, user_message=message)
        logger.info("workspace %s: placed %d file(s)", workspace, len(files))

    def remove_workspace(self, workspace: str) -> None:
        """Remove the conversation's container, its saved workspace and its stamp."""
        _check_slug(workspace)
        with self._translated(workspace):
            for name in (_sandbox_name(workspace), _stamp_name(workspace)):
                self._remove_container(name)
            with contextlib.suppress(docker.errors.NotFound):
                self.client.volumes.get(_volume_name(workspace)).remove(force=True)
        logger.info("workspace %s: removed", workspace)

    # -- maintenance -----------------------------------------------------------------------------

    def reap(self) -> int:
        """Retire every sandbox container past its expiry (or stopped); returns how many."""
        now = time.time()
        reaped = 0
        with self._translated("-"):
            listed = self.client.api.containers(all=True, filters={"label": f"{ROLE_LABEL}={SANDBOX_ROLE}"})
            for info in listed:
                labels = info.get("Labels") or {}
                if _expiry(labels) > now and info.get("State") == "running":
                    continue
                self._retire(
                    info["Id"], labels.get(WORKSPACE_LABEL, "?"), save=info.get("State") == "running"
                )
                reaped += 1
        return reaped

    def cleanup_idle(self) -> int:
        """Remove workspaces whose last run is older than `workspace_ttl`; returns how many."""
        removed = 0
        with self._translated("-"):
            volumes = self.client.api.volumes(filters={"label": f"{ROLE_LABEL}={WORKSPACE_ROLE}"})
            for volume in volumes.get("Volumes") or []:
                workspace = (volume.get("Labels") or {}).get(WORKSPACE_LABEL, "")
                if _SLUG.fullmatch(workspace) and self._idle(workspace, volume):
                    self.remove_workspace(workspace)
                    removed += 1
        return removed

    # -- the engine ------------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client, made on first use (a constructor never talks to the engine)."""
        if self._client is None:
            if self._base_url:
                self._client = docker.DockerClient(base_url=self._base_url, timeout=30)
            else:
                self._client = docker.from_env(timeout=30)
        return self._client

    def _reconnect(self) -> None:
        """Drop a client we made, so the next call connects again: the engine may be back by then."""
        if self._client is not None and self._client is not self._given_client:
            self._client.close()
            self._client = None

    @contextlib.contextmanager
    def _translated(self, workspace: str) -> Iterator[None]:
        """Engine errors become one `SandboxError` with words a user understands."""
        try:
            yield
        except docker.errors.ImageNotFound as exc:
            logger.error("workspace %s: sandbox image %s is missing", workspace, self.image)
            raise SandboxError(
                f"sandbox image {self.image} is missing",
                user_message=f"The sandbox image {self.image} is missing: "
                "build it with scripts/build-sandbox-image",
            ) from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            logger.error(
                "workspace %s: docker engine failed: %s", workspace, str(exc)
            )  # no traceback kept alive
            self._reconnect()
            raise SandboxError(
                f"docker engine failed: {exc}",
                user_message="The Docker engine that runs the code sandbox is not reachable "
                "or refused the run; try again once it is back.",
            ) from exc

    def _exec(self, workspace: str, args: list[str], payload: bytes, seconds: float) -> _Exec:
        """Run the wrapper with `args` in the workspace's container, `payload` on its stdin."""
        container = self._container(workspace)
        try:
            exec_id = self._exec_create(container, args, CODE_USER, stdin=bool(payload))
        except docker.errors.APIError as exc:  # the container ended between inspect and exec
            logger.warning("workspace %s: container gone (%s), starting another", workspace, exc)
            self._retire(container, workspace, save=False)
            container = self._container(workspace)
            exec_id = self._exec_create(container, args, CODE_USER, stdin=bool(payload))
        done = self._stream(exec_id, payload, time.monotonic() + seconds)
        reported = args[0] == "run" and done.control.data.startswith(b"AGENTBOT ")
        if not done.deadline_passed and not reported:  # the report has it; saves a round trip
            done.exit_code = int(self.client.api.exec_inspect(exec_id).get("ExitCode") or 0)
        if done.deadline_passed or (args[0] == "run" and not reported):
            # The wrapper did not finish its own cleanup: only the container's end is sure to.
            logger.warning("workspace %s: wrapper did not report; retiring its container", workspace)
            self._retire(container, workspace, save=True)
        return done

    def _exec_create(self, container: str, args: list[str], user: str, *, stdin: bool) -> str:
        created = self.client.api.exec_create(
            container,
            ["bash", "-c", _WRAPPER, "agentbot", *args],
            stdin=stdin,
            user=user,
            workdir=WORKSPACE_DIR,
        )
        exec_id: str = created["Id"]
        return exec_id

    def _stream(self, exec_id: str, payload: bytes, deadline: float) -> _Exec:
        """Send `payload`, then read the multiplexed output until it ends or `deadline` passes."""
        sock = self.client.api.exec_start(exec_id, socket=True)
        raw: socket.socket = getattr(sock, "_sock", sock)
        output = _Capped(self.output_limit)
        control = _Capped(self.artifact_limit + _CONTROL_SLACK)
        try:
            raw.settimeout(max(deadline - time.monotonic(), 0.001))
            if payload:
                raw.sendall(payload)
                raw.shutdown(socket.SHUT_WR)
            passed = _pump(raw, deadline, output, control)
        except TimeoutError:
            passed = True
        finally:
            sock.close()
            raw.close()
        return _Exec(output=output, control=control, exit_code=-1, deadline_passed=passed)

    def _container(self, workspace: str) -> str:
        """The id of the workspace's running container with time left, starting one if needed."""
        name = _sandbox_name(workspace)
        try:
            info = self.client.api.inspect_container(name)
        except docker.errors.NotFound:
            return self._start(workspace)
        labels = info["Config"].get("Labels") or {}
        if info["State"].get("Running") and _expiry(labels) > time.time() + self.timeout + GRACE_SECONDS:
            container_id: str = info["Id"]
            return container_id
        self._retire(info["Id"], workspace, save=bool(info["State"].get("Running")))
        return self._start(workspace)

    def _start(self, workspace: str) -> str:
        """Start the workspace's container and restore its saved files into the tmpfs."""
        self.reap()
        self._ensure_volume(workspace)
        self._stamp(workspace)
        try:
            container = self.client.api.create_container(**self._container_config(workspace))
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            logger.info("workspace %s: another worker started its container", workspace)
            info = self.client.api.inspect_container(_sandbox_name(workspace))
            existing: str = info["Id"]
            return existing
        container_id: str = container["Id"]
        self.client.api.start(container_id)
        exec_id = self._exec_create(container_id, ["restore"], CODE_USER, stdin=False)
        self.client.api.exec_start(exec_id)
        if self.client.api.exec_inspect(exec_id).get("ExitCode"):
            logger.error("workspace %s: restoring the saved workspace failed", workspace)
        logger.info("workspace %s: started sandbox container %s", workspace, container_id[:12])
        return container_id

    def _container_config(self, workspace: str) -> dict[str, Any]:
        expires = time.time() + self.warm_seconds
        host_config = self.client.api.create_host_config(
            init=True,
            auto_remove=True,
            network_mode=self.network,
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # tmpfs pages count against the memory cgroup, so the code keeps `memory` for itself
            mem_limit=self.memory + self.disk + TMP_SIZE,
            memswap_limit=self.memory + self.disk + TMP_SIZE,
            nano_cpus=int(self.cpus * 1e9),
            pids_limit=self.pids,
            tmpfs={
                WORKSPACE_DIR: f"rw,nosuid,nodev,exec,size={self.disk},uid=1000,gid=1000,mode=0755",
                "/tmp": f"rw,nosuid,nodev,exec,size={TMP_SIZE},mode=1777",
            },
            binds={_volume_name(workspace): {"bind": "/keep", "mode": "rw"}},
            ulimits=[docker.types.Ulimit(name="core", soft=0, hard=0)],
        )
        return {
            "image": self.image,
            "name": _sandbox_name(workspace),
            "command": ["sleep", f"{self.warm_seconds + LIFETIME_MARGIN:.0f}"],
            "user": KEEPER_USER,
            "working_dir": WORKSPACE_DIR,
            "hostname": "sandbox",
            "environment": _environment(self.cpus),
            "labels": {
                ROLE_LABEL: SANDBOX_ROLE,
                WORKSPACE_LABEL: workspace,
                EXPIRES_LABEL: f"{expires:.0f}",
            },
            "network_disabled": self.network == "none",
            "host_config": host_config,
        }

    def _ensure_volume(self, workspace: str) -> None:
        labels = {ROLE_LABEL: WORKSPACE_ROLE, WORKSPACE_LABEL: workspace}
        self.client.api.create_volume(_volume_name(workspace), labels=labels)  # no-op when it exists

    def _stamp(self, workspace: str) -> None:
        """Record the last use: a never-started container whose label says when."""
        self._remove_container(_stamp_name(workspace))
        labels = {
            ROLE_LABEL: WORKSPACE_ROLE,
            WORKSPACE_LABEL: workspace,
            LAST_USED_LABEL: f"{time.time():.0f}",
        }
        host_config = self.client.api.create_host_config(binds={_volume_name(workspace): {"bind": "/keep"}})
        with contextlib.suppress(docker.errors.APIError):  # a racing worker stamped it just now
            self.client.api.create_container(
                self.image,
                command=["true"],
                name=_stamp_name(workspace),
                labels=labels,
                network_disabled=True,
                host_config=host_config,
            )

    def _idle(self, workspace: str, volume: dict[str, Any]) -> bool:
        if self._is_running(_sandbox_name(workspace)):
            return False
        try:
            labels = self.client.api.inspect_container(_stamp_name(workspace))["Config"].get("Labels") or {}
            last_used = float(labels.get(LAST_USED_LABEL, 0))
        except docker.errors.NotFound:
            last_used = 0.0
        return time.time() - last_used > self.workspace_ttl

    def _is_running(self, name: str) -> bool:
        try:
            return bool(self.client.api.inspect_container(name)["State"].get("Running"))
        except docker.errors.NotFound:
            return False

    def _retire(self, container: str, workspace: str, *, save: bool) -> None:
        """Save the workspace into its volume (when asked and possible), then remove the container."""
        try:  # claim it first: of two workers retiring one container, only one saves
            self.client.api.rename(container, f"agentbot-retiring-{container[:12]}-{time.time_ns()}")
        except docker.errors.APIError:
            return
        if save:
            self._save(container, workspace)
        self._remove_container(container)
        logger.info("workspace %s: retired container %s", workspace, container[:12])

    def _save(self, container: str, workspace: str) -> None:
        for mode, user in (("prepare", CODE_USER), ("save", SAVE_USER)):
            try:
                exec_id = self._exec_create(container, [mode], user, stdin=False)
                self.client.api.exec_start(exec_id)
                code = self.client.api.exec_inspect(exec_id).get("ExitCode")
            except docker.errors.APIError as exc:  # e.g. a fork bomb holds every pid
                logger.error("workspace %s: could not save the workspace: %s", workspace, exc)
                return
            if code:
                logger.error("workspace %s: %s exited with %s", workspace, mode, code)

    def _remove_container(self, container: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            try:
                self.client.api.remove_container(container, force=True)
            except docker.errors.APIError as exc:
                # 409: auto_remove is already removing it; 500 "directory not empty": the engine's own
                # auto-remove raced ours (engine 20.10). Either way the container is on its way out, and
                # `reap()` retires any that lingers: not a reason to fail the run.
                if exc.status_code not in (409, 500):
                    raise
                logger.warning("container %s: removal left to the engine: %s", container[:12], exc)

    def _result(self, workspace: str, done: _Exec) -> CodeResult:
        report = _parse_report(bytes(done.control.data)) if not done.control.truncated else None
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
            output=_render(done.output, timed_out, self.timeout, notes),
            artifacts=artifacts,
            timed_out=timed_out,
            output_truncated=done.output.truncated,
        )

    def _artifacts(self, report: _Report) -> tuple[tuple[Artifact, ...], list[str]]:
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


def _pump(raw: socket.socket, deadline: float, output: _Capped, control: _Capped) -> bool:
    """Read Docker's multiplexed frames (8-byte header: stream, 0, 0, 0, size) until the stream ends.

    Returns True when `deadline` passes first. Past their caps the streams are drained, not kept.
    """
    pending = bytearray()
    sinks = {1: output, 2: control}
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        raw.settimeout(remaining)
        chunk = raw.recv(_CHUNK)
        if not chunk:
            return False
        pending += chunk
        while len(pending) >= 8:
            size = int.from_bytes(pending[4:8], "big")
            if len(pending) < 8 + size:
                break
            sink = sinks.get(pending[0])
            if sink is not None:
                sink.add(bytes(pending[8 : 8 + size]))
            del pending[: 8 + size]


def _parse_report(data: bytes) -> _Report | None:
    """The wrapper's report: `AGENTBOT <exit> <timed out>`, `size\tname` records up to an empty one, a tar."""
    header, _, rest = data.partition(b"\n")
    parts = header.split()
    if len(parts) != 3 or parts[0] != b"AGENTBOT" or not all(p.isdigit() for p in parts[1:]):
        return None
    changed = []
    while rest and not rest.startswith(b"\0"):
        record, _, rest = rest.partition(b"\0")
        size, tab, name = record.partition(b"\t")
        if tab and size.isdigit():
            changed.append((name.decode(errors="replace"), int(size)))
    return _Report(
        exit_code=int(parts[1]),
        timed_out=parts[2] == b"1",
        changed=changed,
        files=_untar(rest[1:]),
    )


def _untar(data: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if not data:
        return files
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                extracted = archive.extractfile(member) if member.isreg() else None
                if extracted is not None:
                    files[member.name] = extracted.read()
    except tarfile.TarError:
        logger.warning("the sandbox sent a malformed artifact archive")
    return files


def _fits_argument(text: str) -> bool:
    # Linux caps one argument at 128 KiB (MAX_ARG_STRLEN); bash strings cannot hold NUL
    return "\0" not in text and len(text.encode()) < 100_000


def _tar(contents: Sequence[bytes]) -> bytes:
    """A tar of `contents` named 0, 1, 2...: the wrapper places them under their real names."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for index, content in enumerate(contents):
            info = tarfile.TarInfo(str(index))
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _render(output: _Capped, timed_out: bool, timeout: float, notes: Sequence[str]) -> str:
    text = output.data.decode("utf-8", errors="replace")
    lines = []
    if output.truncated:
        lines.append(f"[output truncated: the code printed more than {output.limit} bytes]")
    if timed_out:
        lines.append(f"Timeout: the code ran longer than {timeout:g} s and was stopped.")
    lines.extend(notes)
    if lines and text and not text.endswith("\n"):
        text += "\n"
    return text + "\n".join(lines)


def _environment(cpus: float) -> dict[str, str]:
    # Built from scratch: the code never sees the worker's environment (API keys, tokens).
    threads = str(max(1, int(cpus)))  # BLAS threads spinning past the CPU quota slow numpy down
    return {
        "OPENBLAS_NUM_THREADS": threads,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONUNBUFFERED": "1",  # stdout and stderr then interleave in the order they were written
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": "/opt/agentbot/mpl",
        "MPLBACKEND": "module://agentbot_backend",
        "MPLCONFIGDIR": "/tmp/matplotlib",
    }


def _expiry(labels: dict[str, str]) -> float:
    try:
        return float(labels.get(EXPIRES_LABEL, 0))
    except ValueError:
        return 0.0


def _check_slug(workspace: str) -> None:
    if not _SLUG.fullmatch(workspace):
        raise ValueError(f"workspace must be a slug of letters, digits, '_' and '-', not {workspace!r}")


def _sandbox_name(workspace: str) -> str:
    return f"agentbot-sbx-{workspace}"


def _stamp_name(workspace: str) -> str:
    return f"agentbot-ws-{workspace}"


def _volume_name(workspace: str) -> str:
    return f"agentbot-ws-{workspace}"
