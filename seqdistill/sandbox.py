"""Run untrusted Python (a model's program plus its tests) in a fresh, limited process: the local sandbox behind
`task: code`, needing no service.

Each run gets its own temporary directory and process, and:
- limits: CPU seconds, wall seconds (the whole process group is killed at the deadline), address space, file size,
  open files, and a process count (no fork bomb). RLIMIT_NPROC does not bind root, so when seqdistill runs as root
  the program runs as an unprivileged user of its own (a uid per pool slot, with no login or files anywhere);
  every process of that uid is killed after the run, so nothing it forked outlives it;
- no network and no writable place but its own directory: a new network namespace (only a down loopback) and a
  new mount namespace in which /tmp, /var/tmp, /dev/shm and the lock dirs are empty read-only tmpfs, where the
  kernel allows it (root); where it does not, `network_isolated` is false and only file permissions stand;
- a scrubbed environment (PATH, LANG, a HOME inside its directory; no secrets, nothing of the caller's), stdin
  closed, captured output capped, the interpreter in isolated mode (-I: no user site, no PYTHON* variables).

Passing is decided by a token, never by the exit code: the harness reads a random token on stdin before the
program runs (then stdin is closed), keeps it off the program's globals, and writes it to the parent on a private
descriptor only after every test statement ran without an exception. A program that exits early with status 0
(`os._exit(0)`, `sys.exit(0)`), redefines `check`, or writes fake success lines does not pass. What it does not
defend against: a program that deliberately searches the interpreter's memory for the token (it runs in the same
process as the harness); the limits above bound what such a program can do to the machine."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

_UID_BASE = 61000  # sandbox uids: one per pool slot, no passwd entry, owning nothing outside its run dir

HARNESS = r'''
import os, sys
def _main():
    token = sys.stdin.readline().strip()
    sys.stdin.close()
    os.close(0)
    report = os.dup(1)
    out = os.open("output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    program, tests = open("program.py").read(), open("tests.py").read()
    g = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(program, "program.py", "exec"), g)
    except AssertionError as e:  # the program's own asserts (models often add some under their code)
        os.write(report, ("FAIL assertion in the program's own code " + str(e)[:300] + "\n").encode())
        os._exit(1)
    except BaseException as e:
        os.write(report, ("ERROR program " + type(e).__name__ + ": " + str(e)[:300] + "\n").encode())
        os._exit(1)
    try:
        exec(compile(tests, "tests.py", "exec"), g)
    except AssertionError as e:
        os.write(report, ("FAIL assertion " + str(e)[:300] + "\n").encode())
        os._exit(1)
    except BaseException as e:
        os.write(report, ("ERROR tests " + type(e).__name__ + ": " + str(e)[:300] + "\n").encode())
        os._exit(1)
    os.write(report, (token + "\n").encode())
    os._exit(0)
_main()
'''


@dataclass(frozen=True)
class Limits:
    cpu_s: float = 10.0
    wall_s: float = 20.0
    memory_mb: int = 1024
    file_mb: int = 16
    processes: int = 16
    open_files: int = 64
    output_bytes: int = 4096


@dataclass(frozen=True)
class Run:
    passed: bool
    reason: str  # "passed" | "assertion failed" | "exception" | "timeout" | "memory" | "exited before the tests"...
    detail: str
    output: str  # the program's own output, capped
    seconds: float
    network_isolated: bool


def sandbox_python() -> str:
    """An interpreter the sandbox user can execute: this one if every directory above it is world-searchable
    (a pyenv under a 0700 /root is not), else the system's python3."""
    for cand in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        if not cand:
            continue
        p = Path(cand).resolve()
        if os.geteuid() != 0 or all(os.stat(d).st_mode & stat.S_IXOTH for d in p.parents):
            return str(p)
    raise RuntimeError("no Python interpreter the sandbox user may execute (sys.executable sits under a private "
                       "directory and there is no /usr/bin/python3)")


# Runs first in the new process (no threads there, unlike a preexec_fn in a threaded parent): new session, no
# network, limits, drop to the sandbox uid, then exec the harness. Arguments: status fd, uid or -1, want netns,
# cpu s, memory MB, file MB, open files, processes.
LAUNCHER = r'''
import ctypes, os, resource, sys
fd, uid, want_net, cpu, mem, fsize, nofile, nproc = (int(x) for x in sys.argv[1:9])
os.setsid()
harness = open("harness.py").read()  # read before /tmp is masked; later opens are relative to the cwd inode
net = b"0"
if want_net:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    try:
        # a new network namespace (no interface but a down loopback) and a new mount namespace in which every
        # world-writable directory is covered by an empty read-only tmpfs: the program can write only its own dir
        if libc.unshare(0x40000000 | 0x00020000) == 0:
            net = b"1"
            if libc.mount(None, b"/", None, 16384 | (1 << 18), None) == 0:  # MS_REC | MS_PRIVATE
                for d in (b"/tmp", b"/var/tmp", b"/dev/shm", b"/run/lock", b"/var/lock", b"/dev/mqueue"):
                    if os.path.isdir(d) and not os.path.islink(d):
                        libc.mount(b"tmpfs", d, b"tmpfs", 1 | 2 | 4 | 8, b"size=16k,mode=0555")
    except OSError:
        pass
os.write(fd, net)
os.close(fd)
mb = 1 << 20
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (mem * mb, mem * mb))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize * mb, fsize * mb))
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if uid >= 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
os.execv(sys.executable, [sys.executable, "-I", "-S", "-c", harness])
'''


def _uid_processes(uid: int) -> list[int]:
    """Live processes of a uid (zombies are dead already: their parent, or init, reaps them)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and d.stat().st_uid == uid and \
                    (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(int(d.name))
        except (OSError, IndexError):
            continue
    return out


def _kill_uid(uid: int) -> None:
    """Kill every process of a sandbox uid, a child that left the process group (setsid) or a fork bomb included:
    a helper that becomes that uid sends kill(-1, SIGKILL), which the kernel delivers to all of the uid's
    processes in one pass (no new fork can slip between a scan and a kill)."""
    for _ in range(5):
        if not _uid_processes(uid):
            return
        pid = os.fork()
        if pid == 0:  # only syscalls, then _exit: safe in a threaded parent
            try:
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.02)


def run_program(program: str, tests: str, limits: Limits = Limits(), slot: int = 0) -> Run:
    """Run `program` then `tests` (statements that raise on failure) in a fresh sandbox; see the module doc."""
    root = os.geteuid() == 0
    uid = _UID_BASE + slot if root else None
    work = Path(tempfile.mkdtemp(prefix="seqdistill-sandbox-"))
    t0 = time.monotonic()
    try:
        (work / "program.py").write_text(program)
        (work / "tests.py").write_text(tests)
        (work / "harness.py").write_text(HARNESS)
        (work / "launcher.py").write_text(LAUNCHER)
        if uid is not None:
            for f in (work, *work.iterdir()):
                os.chown(f, uid, uid)
        os.chmod(work, 0o700)
        token = secrets.token_hex(16)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
        rfd, wfd = os.pipe()
        args = [wfd, -1 if uid is None else uid, int(root), max(1, int(limits.cpu_s + 0.999)), limits.memory_mb,
                limits.file_mb, limits.open_files, limits.processes]
        proc = subprocess.Popen(
            [sandbox_python(), "-I", "-S", "launcher.py", *map(str, args)], cwd=work, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, pass_fds=(wfd,),
            close_fds=True)
        os.close(wfd)
        net = os.read(rfd, 1) == b"1"  # b"" if the launcher died before saying
        os.close(rfd)
        timed_out = False
        try:
            report, _ = proc.communicate((token + "\n").encode(), timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            report, _ = proc.communicate()
        finally:
            if uid is not None:
                _kill_uid(uid)
        seconds = time.monotonic() - t0
        output = _tail(work / "output.txt", limits.output_bytes)
        lines = report.decode("utf-8", "replace").strip().splitlines()
        last = lines[-1] if lines else ""
        if not timed_out and proc.returncode == 0 and last == token:
            return Run(True, "passed", "every test ran and passed", output, seconds, net)
        reason, detail = _why(timed_out, proc.returncode, last, token, limits)
        return Run(False, reason, detail, output, seconds, net)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _tail(path: Path, cap: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - cap))
            return f.read(cap).decode("utf-8", "replace")
    except OSError:
        return ""


def _why(timed_out: bool, rc: int | None, last: str, token: str, limits: Limits) -> tuple[str, str]:
    if timed_out:
        return "timeout", f"killed after {limits.wall_s:g} s of wall time"
    if rc is not None and rc < 0 and -rc in (signal.SIGXCPU, signal.SIGKILL):
        return "timeout", f"killed by signal {signal.Signals(-rc).name} (CPU limit {limits.cpu_s:g} s)"
    if last.startswith("FAIL assertion"):
        return "assertion failed", last[len("FAIL assertion"):].strip() or "an assert was false"
    if last.startswith("ERROR"):
        kind = last.split(" ", 2)
        if "MemoryError" in last:
            return "memory", f"memory limit {limits.memory_mb} MB"
        return "exception", " ".join(kind[1:])[:300]
    if rc == 0 and last != token:
        return "exited before the tests", "exit status 0 without the harness's token: the tests never all ran"
    return "exception", f"exit status {rc}"


class SandboxPool:
    """Run many programs in parallel, one slot (and one sandbox uid) per worker thread."""

    def __init__(self, workers: int = 2, limits: Limits = Limits()):
        self.workers, self.limits = workers, limits

    def run_many(self, jobs: list[tuple[str, str]]) -> list[Run]:
        slots = list(range(self.workers))
        import queue

        free: queue.Queue[int] = queue.Queue()
        for s in slots:
            free.put(s)

        def one(job):
            slot = free.get()
            try:
                return run_program(job[0], job[1], self.limits, slot)
            finally:
                free.put(slot)

        with ThreadPoolExecutor(self.workers) as ex:
            return list(ex.map(one, jobs))
