"""The hardened Docker executor: code runs in a warm per-conversation container, files live on the engine.

Design (figures in bench/README.md):

* **Warm container per conversation, no `docker exec` per run.** A hardened `docker run` costs several
  times an exec, which is what AG2's `DockerCommandLineCodeExecutor` pays per block; an exec costs more
  than a `print(1)`, and `import numpy, pandas, matplotlib` most of a chart. So a conversation keeps a
  container `agentbot-sbx-<workspace>`, retired (workspace saved, container removed) after
  `warm_seconds`, and each run goes to a pre-imported **supervisor** inside it through the container's
  attach (one API call; `supervisor.py` has the design and the wire format): its main process, the
  **broker** (as `nobody`), reads the run from stdin and hands it to the supervisor (as the code's uid),
  which forks one child per block. A supervisor serves one run and is replaced by a fresh exec right
  after, in a background thread: the code may kill it or change its limits, never the next one's.
  With no supervisor ready (a cold container's first run, a killed one) the run goes by an exec of
  `wrapper.sh` as before, with the same semantics.
* **Warm pool.** `pool` unassigned containers wait with their supervisor ready. A conversation never
  seen before claims one by renaming it (the rename is the lock); labels and mounts cannot change, so
  the claimed container keeps its pool volume and the conversation's stamp records it. A claimed
  container is replaced in the background after the run; the workers' housekeeping keeps the pool full.
* **Retired on time.** Every worker process runs `housekeeping.Housekeeper`, a thread that retires
  expired containers (saving their workspaces first) every tenth of `warm_seconds` (1-15 s), with no
  traffic needed; a run that starts a container also reaps.
* **Hardened container.** No network unless configured, memory/CPU/pids limits, read-only root, tmpfs
  for /tmp and the workspace, all capabilities dropped, no-new-privileges, an environment built from
  scratch (never the worker's), tini as PID 1, no log of the output. PID 1 and the broker run as
  `nobody` and user code as 1000:1000, so the code can signal neither; the broker ends the container
  `warm_seconds` plus a margin after its start, so even if every worker dies the container stops and
  (`auto_remove`) disappears by itself.
* **Hard time limit.** The supervisor (or, by exec, `timeout -s KILL`) stops the steps at the limit, then
  sends SIGKILL to every process of the sandbox user (`kill -9 -1`: setsid children and daemons too, as the
  kernel walks all processes of the uid). If the supervisor or wrapper does not answer by the deadline
  plus a grace (the code killed or stopped it), the worker retires the whole container.
* **Output capped while it streams.** The attach's (or exec's) multiplexed stream is read frame by
  frame from the socket; stdout (the code's stdout and stderr, merged in order) keeps at most
  `output_limit` bytes and the rest is drained and dropped, so the worker's memory is bounded whatever
  the code prints. stderr carries the report (exit code, changed files, a tar of the chosen artifacts),
  capped too.
* **Workspaces with a hard size limit and no host path.** The live workspace is a tmpfs of
  `disk` bytes (a real ENOSPC at the limit; a named volume on ext4 has no per-volume quota, so the code
  could fill the engine's disk). It is saved into the named volume `agentbot-ws-<workspace>` (or the
  pool volume its stamp names; mounted
  at /keep, owned by root, read-only to the code) when the container is retired, and restored from it
  when the next container starts. The save runs as uid 0 *without any capability* (our own `cp`, never
  user code); the code's uid cannot write /keep. Volume labels cannot change after creation, so the
  last-used time lives in the label of a never-started "stamp" container `agentbot-ws-<workspace>`,
  replaced whenever a container starts; `cleanup_idle()` removes workspaces unused for `workspace_ttl`.
  Trade-off: changes since the last save are lost if the engine itself dies while a container is warm.
* **A cheap wrapper.** No tar, no temp dir and no sort process on the common path (code is passed as
  arguments, the listings are compared in a bash map). BLAS threads are pinned to the CPU limit.
* **Files in and code in**: code as exec arguments (a tar on the exec's stdin when it is over 100 kB),
  files as a tar on stdin; the wrapper writes each after checking the path for symlinks (`realpath`
  when there is one), so a symlink in the workspace cannot lead a write outside it.

Modules: `containers` (the engine: names, labels, hardened config, start, retire, save, reap, the pool,
supervisors, errors translated into `SandboxError`), `stream` (one exec's or attach's capped streams,
the report, tars), `executor` (`DockerExecutor`, the CodeExecutor port composing both), `housekeeping`
(the workers' periodic round), and the in-container programs `supervisor.py` (broker and supervisor,
standard library only) and `wrapper.sh` (exec runs, files in, save and restore).
One run of a conversation at a time is the job queue's guarantee (`JobQueue`); this executor does not
lock.
"""

from agentbot.sandbox.docker.containers import (
    CODE_USER,
    ROLE_LABEL,
    SANDBOX_ROLE,
    WORKSPACE_DIR,
    WORKSPACE_LABEL,
    parse_size,
)
from agentbot.sandbox.docker.executor import DockerExecutor

__all__ = [
    "CODE_USER",
    "ROLE_LABEL",
    "SANDBOX_ROLE",
    "WORKSPACE_DIR",
    "WORKSPACE_LABEL",
    "DockerExecutor",
    "parse_size",
]
