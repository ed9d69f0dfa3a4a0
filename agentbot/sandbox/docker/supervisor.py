"""The in-container side of pre-imported runs: a broker that owns the container's stdio, and supervisors.

Shipped in the sandbox image as /opt/agentbot/supervisor.py (scripts/build-sandbox-image); it runs on the
image's Python with the standard library only, never with agentbot installed.

* `broker <seconds>` is the container's main process (under tini, as `nobody`, beside the egress relay).
  It reads requests from the container's stdin, which the worker writes through the Docker API's attach
  (one HTTP call, no `docker exec`: works with a remote `tcp://` engine, no host socket or mount), and
  answers on the container's stdout and stderr. It listens on a unix socket for one supervisor at a time
  and ends the container when its lifetime is over.
* `serve <modules>` is a supervisor: started as the code's uid by a detached exec, right after the
  previous run ended, it imports `<modules>` (numpy, pandas, matplotlib...), says READY to the broker,
  and then runs exactly one request: it writes the blocks into the workspace, forks one child per block
  (a pre-imported Python block runs in the child, any other command is exec'd there), enforces the
  time limit by killing every process of its uid, and reports the changed files like wrapper.sh does.

Why one supervisor per run: with every capability dropped the supervisor cannot switch to another uid,
so the code runs as the supervisor's uid and may kill it, stop it, or change its limits (`prlimit`,
`renice`). It cannot read or write its memory (the supervisor is not dumpable, so ptrace and
/proc/<pid>/mem are refused), but limits it changed would be inherited by anything the supervisor
started. So a supervisor serves one run and then exits; the next one is started by the engine (a fresh
exec, limits from the container's configuration) only after every process of that run is dead, and it
authenticates to the broker with a token nobody else has seen. Its imports are paid while people read
the result. A supervisor killed mid-run is a run that did not report, as a killed wrapper is.

Wire format (one JSON object per line, ASCII only, so Docker's detach keys never occur in it):
  worker -> broker stdin   {"op": "expect", "token": T} | {"op": "run", "nonce": N, "next": T', "wait": s,
                            "request": {...}}
  broker -> worker stderr  `AGENTBOT-BROKER <nonce> <status> <size>\\n` and <size> bytes of report;
                           status `ran` (report follows), `none` (no supervisor: run it another way),
                           `lost` (the supervisor died mid-run)
  broker -> worker stdout  after a `ran` or `lost`: `\\n<nonce>\\n`, after every byte the code wrote
  supervisor -> broker     `HELLO <token>\\n`, `READY\\n`; then receives the request line with the
                           container's stdout as a passed fd, and sends `<size>\\n<report>`
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import io
import json
import os
import select
import signal
import socket
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from typing import Any

WORKSPACE = "/workspace"
SOCKET_DIR = "/tmp/.agentbot"
SOCKET_PATH = f"{SOCKET_DIR}/broker.sock"
TOKEN_VARIABLE = "AGENTBOT_SUPERVISOR_TOKEN"
LISTING_MAX = 1000  # names in a report at most, as wrapper.sh
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".bmp", ".tif", ".tiff", ".ico")
MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pth")
CONNECT_WAIT = 3.0  # the broker waits this long for an expected supervisor to connect
PR_SET_DUMPABLE = 4

Record = tuple[str, float, float, int]  # a workspace file: name, mtime, ctime, size


# -- shared ---------------------------------------------------------------------------------------


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_line(conn: socket.socket, limit: int = 1 << 30) -> bytes:
    """One line from `conn` (without its newline); b"" when the peer closed first."""
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk or len(line) > limit:
            return b""
        line += chunk
    return bytes(line[:-1])


def read_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(min(size - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def set_dumpable(value: int) -> None:
    """Non-dumpable: processes of the same uid may signal us but not ptrace us or open /proc/<pid>/mem."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, value, 0, 0, 0)


# -- the broker (as nobody, the container's main process) -----------------------------------------


class Broker:
    """Requests from the container's stdin, one supervisor at a time on the socket, answers on stdio."""

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds
        self.expected: str | None = None
        self.supervisor: socket.socket | None = None
        self.ready = False
        self.pending = bytearray()
        os.makedirs(SOCKET_DIR, mode=0o755, exist_ok=True)  # ours: the code's uid cannot replace the socket
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(SOCKET_PATH)
        os.chmod(SOCKET_PATH, 0o777)
        self.listener.listen(8)

    def serve(self) -> None:
        while (left := self.ends - time.monotonic()) > 0:
            watched: list[Any] = [0, self.listener] + ([self.supervisor] if self.supervisor else [])
            readable, _, _ = select.select(watched, [], [], left)
            if self.listener in readable:
                self.accept(time.monotonic() + 1.0)
            if self.supervisor is not None and self.supervisor in readable:
                self.from_supervisor()
            if 0 in readable:
                chunk = os.read(0, 1 << 20)
                if not chunk:  # stdin closed: nothing more will come; live out the lifetime
                    time.sleep(max(self.ends - time.monotonic(), 0))
                    return
                self.pending += chunk
                while b"\n" in self.pending:
                    line, _, rest = bytes(self.pending).partition(b"\n")
                    self.pending = bytearray(rest)
                    self.handle(line)

    def accept(self, deadline: float) -> None:
        """Take one connection; keep it when it presents the expected token."""
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            hello = read_line(conn, 200).split()
        except OSError:
            hello = []
        if self.expected and hello == [b"HELLO", self.expected.encode()]:
            self.drop_supervisor()
            self.supervisor, self.ready, self.expected = conn, False, None
            conn.settimeout(None)
        else:
            conn.close()

    def from_supervisor(self) -> None:
        """READY from an idle supervisor, or its end."""
        assert self.supervisor is not None
        self.supervisor.setblocking(False)
        try:
            data = self.supervisor.recv(64)
        except BlockingIOError:
            data = b"?"
        except OSError:
            data = b""
        finally:
            if self.supervisor is not None:
                self.supervisor.setblocking(True)
        if data.startswith(b"READY"):
            self.ready = True
        elif not data:
            self.drop_supervisor()

    def drop_supervisor(self) -> None:
        if self.supervisor is not None:
            self.supervisor.close()
        self.supervisor, self.ready = None, False

    def handle(self, line: bytes) -> None:
        try:
            message = json.loads(line)
            if not isinstance(message, dict):
                return
        except ValueError:  # e.g. the rest of a request a dead worker left half-written
            return
        if message.get("op") == "expect":
            self.expected = str(message.get("token") or "") or None
        elif message.get("op") == "run":
            self.run(message)

    def run(self, message: dict[str, Any]) -> None:
        nonce = str(message.get("nonce", ""))
        self.wait_ready(float(message.get("wait", 0)))
        supervisor = self.supervisor if self.ready else None
        self.expected = str(message.get("next") or "") or None
        if supervisor is None:
            self.answer(nonce, "none", b"")
            return
        self.supervisor, self.ready = None, False
        request = json.dumps(message.get("request", {})).encode() + b"\n"
        try:
            supervisor.settimeout(float(message.get("seconds", 3600)))
            socket.send_fds(supervisor, [request], [1])
            size = read_line(supervisor, 20)
            report = read_exactly(supervisor, int(size)) if size.isdigit() else None
        except (OSError, ValueError):
            report = None
        finally:
            supervisor.close()
        write_all(1, f"\n{nonce}\n".encode())
        self.answer(nonce, "ran" if report is not None else "lost", report or b"")

    def wait_ready(self, seconds: float) -> None:
        """Wait up to `seconds` for a supervisor that is expected or importing to say READY."""
        deadline = time.monotonic() + seconds
        connect_by = time.monotonic() + min(seconds, CONNECT_WAIT)
        while not self.ready and (left := deadline - time.monotonic()) > 0:
            if self.supervisor is None:
                if not self.expected or time.monotonic() > connect_by:
                    return
                readable, _, _ = select.select([self.listener], [], [], min(left, 0.5))
                if readable:
                    self.accept(deadline)
            else:
                readable, _, _ = select.select([self.supervisor], [], [], left)
                if readable:
                    self.from_supervisor()

    def answer(self, nonce: str, status: str, report: bytes) -> None:
        write_all(2, f"AGENTBOT-BROKER {nonce} {status} {len(report)}\n".encode() + report)


def broker(seconds: float) -> None:
    """Serve until the lifetime ends; on a fault of our own, keep the container alive as `sleep` would."""
    ends = time.monotonic() + seconds
    try:
        Broker(seconds).serve()
    except Exception:  # the container must not end early: runs then go by exec
        os.execvp("sleep", ["sleep", f"{max(ends - time.monotonic(), 1):.0f}"])


# -- the supervisor (as the code's uid, one run) --------------------------------------------------


def user_site() -> str:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return os.path.join(os.environ.get("PYTHONUSERBASE", ""), "lib", version, "site-packages")


def module_names(directory: str) -> set[str]:
    """Names an `import` could find in `directory`: packages, modules, extensions (and .pth files)."""
    names = set()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return set()
    for entry in entries:
        stem = entry.name.split(".", 1)[0]
        if entry.name.endswith(".pth"):
            names.add(entry.name)
        elif entry.name.endswith(MODULE_SUFFIXES) or ("." not in entry.name and entry.is_dir()):
            names.add(stem)
    return names


class Supervisor:
    """One run: place the blocks, fork a child per block, kill the rest, report."""

    def __init__(self, modules: list[str]) -> None:
        self.base_environment = {k: v for k, v in os.environ.items() if k != TOKEN_VARIABLE}
        self.site_names = module_names(user_site())
        self.python_handlers = {
            number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)
        }
        self.degraded = not self.preimport(modules)
        self.loaded = {name.partition(".")[0] for name in sys.modules} - {"__main__"}

    @staticmethod
    def preimport(modules: list[str]) -> bool:
        """Import `modules`; False when one failed (every block then runs in a fresh interpreter)."""
        ok = True
        for name in modules:
            try:
                __import__(name)
            except BaseException:  # a broken package must not stop the supervisor
                ok = False
        if "matplotlib.pyplot" in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules["matplotlib.pyplot"].switch_backend(os.environ.get("MPLBACKEND", "agg"))
        import gc  # noqa: PLC0415  # after the imports: keep their objects out of every child's collections

        gc.collect()
        gc.freeze()
        return ok

    def fresh_interpreter(self, path: str) -> bool:
        """Whether a block must not use the pre-imported modules: the workspace shadows or changed them."""
        if self.degraded or module_names(user_site()) != self.site_names:
            return True
        return bool(module_names(os.path.dirname(path)) & self.loaded)

    # -- a run -------------------------------------------------------------------------------

    def run(self, request: dict[str, Any], output: int) -> bytes:
        steps: list[tuple[str, str]] = []
        notes: list[str] = []
        for index, (name, command, content) in enumerate(request["steps"]):
            placed = place(name, content.encode("utf-8", "surrogateescape"))
            if isinstance(placed, str) and placed.startswith("cannot write"):
                notes.append(f"[agentbot] {placed} (is the workspace full?): running it without saving it.")
                placed = os.path.join(tempfile.mkdtemp(prefix=".agentbot-run."), str(index))
                with open(placed, "wb") as file:
                    file.write(content.encode("utf-8", "surrogateescape"))
                steps.append((command, placed))
            elif placed is None or placed.startswith("/"):
                steps.append((command, placed or os.path.join(WORKSPACE, name)))
            else:
                write_all(output, f"Code not run: {placed}.\n".encode())
                return report(1, False, None, int(request["limit"]), int(request["max"]))
        for note in notes:
            write_all(output, (note + "\n").encode())
        before: set[Record] = set(listing())
        code, timed = self.run_steps(steps, float(request["timeout"]), request.get("env", {}), output)
        return report(code, timed, before, int(request["limit"]), int(request["max"]))

    def run_steps(
        self, steps: list[tuple[str, str]], timeout: float, environment: dict[str, str], output: int
    ) -> tuple[int, bool]:
        deadline = time.monotonic() + timeout
        code, timed = 0, False
        for command, path in steps:
            pid = os.fork()
            if pid == 0:
                self.child(command, path, environment, output)
            code, timed = wait(pid, deadline)
            if code != 0:
                break
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)  # every other process of this uid: daemons, setsid children
        return code, timed

    def child(self, command: str, path: str, environment: dict[str, str], output: int) -> None:
        """In the forked child: the block's stdio and environment, then its code (never returns)."""
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.closerange(3, 65536)
            for number, handler in self.python_handlers.items():
                signal.signal(number, handler)
            set_dumpable(1)
            os.environ.clear()
            os.environ.update({**self.base_environment, **environment})
            os.chdir(WORKSPACE)
            relative = os.path.relpath(path, WORKSPACE) if path.startswith(WORKSPACE + "/") else path
            if command in ("python", "python3") and not self.fresh_interpreter(path):
                run_python(relative, os.path.abspath(path))
            os.execvp(command, [command, relative])
        except OSError as exc:
            os.write(2, f"agentbot: {command}: {exc.strerror}\n".encode())
            os._exit(127)
        except BaseException:  # a child must never fall back into the supervisor's loop
            os._exit(70)


def run_python(argv0: str, path: str) -> None:
    """Run the file as `python <file>` would, in this (forked, pre-imported) process; never returns."""
    import atexit  # noqa: PLC0415
    import importlib  # noqa: PLC0415
    import importlib.machinery  # noqa: PLC0415
    import threading  # noqa: PLC0415
    import types  # noqa: PLC0415

    sys.argv = [argv0]
    sys.path[0] = os.path.dirname(path)
    importlib.invalidate_caches()
    if "numpy.random" in sys.modules:  # a fresh interpreter seeds numpy's global generator anew
        sys.modules["numpy.random"].seed()
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=path,
        __cached__=None,
        __builtins__=sys.modules["builtins"],
        __loader__=importlib.machinery.SourceFileLoader("__main__", path),
    )
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as file:
            source = file.read()
        exec(compile(source, path, "exec", dont_inherit=True), main.__dict__)  # the approved code
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException as exc:  # printed and turned into an exit code, as Python does
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)  # from the code's frame on, as Python prints
        code = 1
        if isinstance(exc, KeyboardInterrupt):
            code = 130
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  # what interpreter exit does first
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    os._exit(code)


def exit_code(exc: SystemExit) -> int:
    """The process exit status Python gives `raise SystemExit(value)`."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    with contextlib.suppress(BaseException):
        print(exc.code, file=sys.stderr)
    return 1


def wait(pid: int, deadline: float) -> tuple[int, bool]:
    """The child's exit status as a shell reports it (128 + signal), and whether the deadline passed."""
    fd = os.pidfd_open(pid)
    try:
        readable, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        timed = not readable
        if timed:
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status), timed
    return os.WEXITSTATUS(status), timed


def place(name: str, content: bytes) -> str | None:
    """Write `content` as workspace file `name`: None, or the absolute path of a symlink-resolved
    target, or what went wrong (never a write outside the workspace through a symlink)."""
    target = os.path.join(WORKSPACE, name)
    prefix, linked = WORKSPACE, False
    for part in name.split("/")[:-1]:
        prefix = os.path.join(prefix, part)
        if os.path.islink(prefix):
            linked = True
            break
    resolved = None
    if linked or os.path.islink(target):
        target = resolved = os.path.realpath(target)
        if not target.startswith(WORKSPACE + "/"):
            return f"filename '{name}' leads outside the workspace through a symlink"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as file:
            file.write(content)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(target)
        return f"cannot write '{name}' in the workspace"
    return resolved


def listing() -> Iterator[Record]:
    """Every regular file under the workspace: (relative name, mtime, ctime, size), as `find -printf`."""
    stack = [WORKSPACE]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
            elif stat.S_ISREG(info.st_mode):
                name = entry.path[len(WORKSPACE) + 1 :]
                yield name, info.st_mtime, info.st_ctime, info.st_size


def changed_files(before: set[Record]) -> list[tuple[bytes, Record]]:
    """Files not in `before` (new or touched), images first, each group by name; hidden ones left out."""
    changed = []
    for record in listing():
        name = record[0]
        if record in before or any(p.startswith(".") or p == "__pycache__" for p in name.split("/")):
            continue
        is_image = name.lower().endswith(IMAGE_SUFFIXES)
        changed.append((not is_image, name.encode("utf-8", "surrogateescape"), record))
    changed.sort(key=lambda item: (item[0], item[1]))
    return [(encoded, record) for _, encoded, record in changed]


def report(code: int, timed: bool, before: set[Record] | None, limit: int, most: int) -> bytes:
    """wrapper.sh's report: header, `size\\tname` records of changed files, an empty one, a tar."""
    out = io.BytesIO()
    out.write(f"AGENTBOT {code} {int(timed)}\n".encode())
    budget, chosen = limit, list[str]()
    for encoded, (name, _, _, size) in changed_files(before)[:LISTING_MAX] if before is not None else []:
        out.write(b"%d\t%s\0" % (size, encoded))
        if len(chosen) < most and size <= budget:
            chosen.append(name)
            budget -= size
    out.write(b"\0")
    if chosen:
        with tarfile.open(fileobj=out, mode="w") as archive:
            for name in chosen:
                with contextlib.suppress(OSError):
                    archive.add(os.path.join(WORKSPACE, name), arcname=name, recursive=False)
    return out.getvalue()


def serve(modules: list[str]) -> None:
    set_dumpable(0)
    os.umask(0o022)
    token = os.environ.get(TOKEN_VARIABLE, "")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(SOCKET_PATH)
    conn.sendall(f"HELLO {token}\n".encode())
    supervisor = Supervisor(modules)
    conn.sendall(b"READY\n")
    fds = array.array("i")
    line = bytearray()
    while not line.endswith(b"\n"):
        chunk, ancillary, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(4 * fds.itemsize))
        if not chunk:
            return
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        line += chunk
    result = supervisor.run(json.loads(line), fds[0])
    conn.sendall(f"{len(result)}\n".encode() + result)


def main(argv: list[str]) -> None:
    if argv[:1] == ["broker"]:
        broker(float(argv[1]))
    elif argv[:1] == ["serve"]:
        serve([name for name in (argv[1] if len(argv) > 1 else "").split(",") if name])
    else:
        sys.exit("usage: supervisor.py broker <seconds> | serve <module,...>")


if __name__ == "__main__":
    main(sys.argv[1:])
