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
import json
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

_UID_BASE = 61000  # sandbox uids (root): claimed one per pool slot with a lock, no passwd entry, owning nothing
_UID_COUNT = 2000
_LOCK_DIR = Path("/run/seqdistill-sandbox")  # root-only; the uid claims' lock files
_MARGIN_S = 5.0  # what the parent waits beyond a program's own wall limit before it kills the launcher


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
    reason: str  # "passed" | "assertion failed" | "exception" | "timeout" | "memory" | "tests broken" | ...
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


# The launcher: trusted code, the program's and the judge's parent. It starts each of them as PID 1 of its own PID,
# network, mount and IPC namespaces (plus a user namespace when not root), waits for the judge's verdict until the
# wall limit, then kills both namespaces' init processes: the kernel then kills every process in them, a child that
# called setsid() included. It prints one JSON line for the parent. argv: mode (root | userns), uid, wall s, cpu s,
# memory MB, file MB, open files, processes.
LAUNCHER = r"""
import ctypes, json, os, resource, select, signal, sys, time
mode, uid = sys.argv[1], int(sys.argv[2])
wall, cpu, mem, fsize, nofile, nproc = (float(sys.argv[3]), *(int(x) for x in sys.argv[4:9]))
libc = ctypes.CDLL(None, use_errno=True)
NEWUSER, NEWPID, NEWNET, NEWNS, NEWIPC = 0x10000000, 0x20000000, 0x40000000, 0x00020000, 0x08000000
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
OPTS = {"nosuid": NOSUID, "nodev": NODEV, "noexec": NOEXEC, "noatime": 1024, "nodiratime": 2048,
        "relatime": 1 << 21}
token = sys.stdin.readline().strip()
sys.stdin.close()
top = os.getcwd()
servant, judge, tests = (open(f).read() for f in ("servant.py", "judge.py", "tests.py"))
for f in ("judge.py", "tests.py"):  # read before the program starts; it never sees them
    os.remove(f)
os.chdir("prog")
prog = os.getcwd()
me_uid, me_gid = os.getuid(), os.getgid()


def mount(src, target, fstype, flags, data=None):
    return libc.mount(src, target, fstype, flags, data) == 0


def isolate():
    # in the middle process: new namespaces; the next fork is PID 1 of the new PID namespace
    if mode == "userns":
        if libc.unshare(NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
        # this uid is 1000 inside: not 0, so the capabilities vanish at the program's exec
        for name, text in (("setgroups", "deny"), ("uid_map", "1000 %d 1" % me_uid), ("gid_map", "1000 %d 1" % me_gid)):
            with open("/proc/self/" + name, "w") as fh:
                fh.write(text)
    if libc.unshare(NEWPID | NEWNET | NEWNS | NEWIPC) != 0:
        raise OSError(ctypes.get_errno(), "unshare")


def seal(workdir):
    # in PID 1: mounts of its own (private), the filesystem read-only but for its own dir, empty read-only tmpfs
    # over the world-writable places, a /proc that shows only its own namespace
    mount(None, b"/", None, REC | PRIVATE)
    if mode == "userns":
        mount(workdir.encode(), workdir.encode(), None, BIND | REC)
        points = []
        for line in open("/proc/self/mountinfo"):
            f = line.split()
            mp = f[4].encode().decode("unicode_escape").encode("latin-1")
            flags = sum(v for k, v in OPTS.items() if k in f[5].split(","))
            points.append((mp, flags))
        for mp, flags in points:
            if mp.decode("latin-1") != workdir:
                mount(None, mp, None, REMOUNT | BIND | RDONLY | flags)
    os.chdir(workdir)
    for d in (b"/tmp", b"/var/tmp", b"/dev/shm", b"/run/lock", b"/var/lock", b"/dev/mqueue", b"/run"):
        if os.path.isdir(d) and not os.path.islink(d):
            mount(b"tmpfs", d, b"tmpfs", RDONLY | NOSUID | NODEV | NOEXEC, b"size=16k,mode=0555")
    if not mount(b"proc", b"/proc", b"proc", NOSUID | NODEV | NOEXEC):
        mount(b"tmpfs", b"/proc", b"tmpfs", RDONLY | NOSUID | NODEV | NOEXEC, b"size=16k,mode=0555")


def spawn(src, workdir, args, keep, stdin=None):
    # middle process (outside the new PID namespace) -> PID 1 that execs `src`; returns (middle pid, init pid, net)
    sync_r, sync_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(sync_r)
            mine = sorted({*keep, sync_w} | ({stdin} if stdin is not None else set()))
            for lo, hi in zip([2] + mine, mine + [65536]):  # every other pipe end stays with its owner
                os.closerange(lo + 1, hi)
            try:
                isolate()
                net = 1
            except OSError:
                net = 0
            inner = os.fork()
            if inner == 0:
                try:
                    os.setsid()  # its own session and group: kill(0) or killpg reaches nothing of the launcher's
                    if net:
                        seal(workdir)
                    else:
                        os.chdir(workdir)
                    mb = 1 << 20
                    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
                    resource.setrlimit(resource.RLIMIT_AS, (mem * mb, mem * mb))
                    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize * mb, fsize * mb))
                    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
                    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
                    if mode == "root":
                        os.setgroups([])
                        os.setgid(uid)
                        os.setuid(uid)
                    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
                    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
                    null = os.open("/dev/null", os.O_RDWR)
                    for target in (0, 1, 2):  # nothing of the launcher's: stdin is the tests (judge) or empty
                        os.dup2(stdin if (target == 0 and stdin is not None) else null, target)
                    for fd in keep:
                        os.set_inheritable(fd, True)
                    os.closerange(3, min(keep))
                    for lo, hi in zip(sorted(keep), sorted(keep)[1:] + [65536]):
                        os.closerange(lo + 1, hi)
                    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "PYTHONDONTWRITEBYTECODE": "1"}
                    os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", src, *map(str, args)], env)
                finally:
                    os._exit(127)
            for fd in {*keep} | ({stdin} if stdin is not None else set()):
                os.close(fd)
            os.write(sync_w, json.dumps([inner, net]).encode())
            os.close(sync_w)
            _, status = os.waitpid(inner, 0)
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
        finally:
            os._exit(126)
    os.close(sync_w)
    data = b""
    while True:
        chunk = os.read(sync_r, 64)
        if not chunk:
            break
        data += chunk
    os.close(sync_r)
    inner, net = json.loads(data or b"[0, 0]")
    return pid, inner, net


req_r, req_w = os.pipe()  # judge -> program: calls
resp_r, resp_w = os.pipe()  # program -> judge: results
rep_r, rep_w = os.pipe()  # judge -> launcher: the verdict
in_r, in_w = os.pipe()  # launcher -> judge: token and tests
os.mkdir(os.path.join(top, "judge"), 0o755)
s_mid, s_init, s_net = spawn(servant, prog, [req_r, resp_w], [req_r, resp_w])
for fd in (req_r, resp_w):
    os.close(fd)
os.set_inheritable(in_r, True)
j_mid, j_init, j_net = spawn(judge, os.path.join(top, "judge"), [rep_w, req_w, resp_r], [rep_w, req_w, resp_r],
                             stdin=in_r)
for fd in (in_r, rep_w, req_w, resp_r):
    os.close(fd)
try:
    os.write(in_w, (token + "\n" + tests).encode())
except OSError:
    pass
os.close(in_w)
deadline = time.monotonic() + wall
verdict, timed_out = b"", False
while len(verdict) < 4096 and not verdict.endswith(b"\n"):
    left = deadline - time.monotonic()
    if left <= 0:
        timed_out = True
        break
    ready, _, _ = select.select([rep_r], [], [], left)
    if not ready:
        continue
    chunk = os.read(rep_r, 4096)
    if not chunk:
        break
    verdict += chunk
done, st = os.waitpid(s_mid, os.WNOHANG)  # how the program's process ended, if it ended before the verdict
if not done and b"process ended" in verdict:  # it died just now (a CPU limit): its status is a moment away
    for _ in range(100):
        done, st = os.waitpid(s_mid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
program_status = (st >> 8) if done else None
for init in (s_init, j_init):  # the namespaces end with their PID 1: nothing the program started survives
    if init > 0:
        try:
            os.kill(init, signal.SIGKILL)
        except OSError:
            pass
for mid in (s_mid, j_mid) if not done else (j_mid,):
    os.waitpid(mid, 0)
print(json.dumps({"verdict": verdict.decode("utf-8", "replace").strip()[:2000], "timed_out": timed_out,
                  "program_status": program_status, "net": bool(s_net and j_net)}), flush=True)
"""


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


class UidClaim:
    """A sandbox uid held by this process alone: an exclusive lock on its lock file for as long as the claim lives
    (a crash releases it), and a uid that owns no live process when claimed. Two pools in two processes never
    share a uid, so neither ever touches the other's programs."""

    def __init__(self):
        import fcntl

        _LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        for uid in range(_UID_BASE, _UID_BASE + _UID_COUNT):
            fh = open(_LOCK_DIR / f"uid-{uid}.lock", "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            if _uid_processes(uid):  # a process left by someone else's run: not ours to use or to kill
                fh.close()
                continue
            self.uid, self._fh = uid, fh
            return
        raise RuntimeError(f"no free sandbox uid in {_UID_BASE}..{_UID_BASE + _UID_COUNT - 1}")

    def release(self) -> None:
        fh = self.__dict__.pop("_fh", None)
        if fh is not None:
            fh.close()


def isolation_mode() -> str:
    """root: namespaces and a uid of its own; userns: an unprivileged user namespace (uid 1000 inside) with the
    same namespaces; none: neither is available here."""
    if os.geteuid() == 0:
        return "root"
    return "userns" if _userns_works() else "none"


def _userns_works() -> bool:
    import ctypes

    pid = os.fork()
    if pid == 0:  # only syscalls, then _exit
        libc = ctypes.CDLL(None, use_errno=True)
        os._exit(0 if libc.unshare(0x10000000 | 0x20000000 | 0x40000000 | 0x00020000 | 0x08000000) == 0 else 1)
    return os.waitpid(pid, 0)[1] == 0


def run_program(program: str, tests: str, limits: Limits = Limits(), slot: int = 0,
                claim: UidClaim | None = None, unisolated_ok: bool = False) -> Run:
    """Run `program` in its sandbox and `tests` in the judge's (seqdistill.judge); see the module doc. `claim`: the
    pool's uid for this slot (root); a run without one claims a uid for itself."""
    mode = isolation_mode()
    if mode == "none" and not unisolated_ok:
        raise RuntimeError("neither root nor unprivileged user namespaces here: programs would run unisolated")
    own = claim is None and mode == "root"
    claim = UidClaim() if own else claim
    uid = claim.uid if claim is not None else -1
    from .judge import JUDGE, SERVANT

    work = Path(tempfile.mkdtemp(prefix="seqdistill-sandbox-"))
    t0 = time.monotonic()
    try:
        prog = work / "prog"
        prog.mkdir()
        (prog / "program.py").write_text(program)
        for name, text in (("servant.py", SERVANT), ("judge.py", JUDGE), ("tests.py", tests),
                           ("launcher.py", LAUNCHER)):
            (work / name).write_text(text)
        if uid >= 0:  # the program's dir is its own; the rest stays root's (0700 files it cannot read)
            for f in (prog, prog / "program.py"):
                os.chown(f, uid, uid)
        os.chmod(work, 0o711)
        token = secrets.token_hex(16)
        args = [mode, uid, limits.wall_s, max(1, int(limits.cpu_s + 0.999)), limits.memory_mb, limits.file_mb,
                limits.open_files, limits.processes]
        proc = subprocess.Popen([sandbox_python(), "-I", "-S", "launcher.py", *map(str, args)], cwd=work,
                                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True,
                                start_new_session=True)
        proc.stdin.write((token + "\n").encode())
        proc.stdin.close()
        raw = _read_capped(proc, limits.wall_s + _MARGIN_S, 64 << 10)
        seconds = time.monotonic() - t0
        output = _read_regular(prog / "output.txt", limits.output_bytes)
        try:
            res = json.loads(raw.decode("utf-8", "replace").strip().splitlines()[-1])
        except (ValueError, IndexError):
            return Run(False, "sandbox error", f"the launcher gave no verdict (exit {proc.returncode})", output,
                       seconds, False)
        verdict = res.get("verdict", "")
        if not res.get("timed_out") and verdict == f"PASS {token}":
            return Run(True, "passed", "every test ran and passed", output, seconds, bool(res.get("net")))
        reason, detail = _why(res, token, limits)
        return Run(False, reason, detail, output, seconds, bool(res.get("net")))
    finally:
        remove_tree(work)
        if own:
            claim.release()


def _read_capped(proc, seconds: float, cap: int) -> bytes:
    """The launcher's output, read until EOF, `cap` bytes or `seconds`; past the deadline its whole process group
    is killed (it is trusted code, but a parent never waits without a bound)."""
    import select

    fd, data, deadline = proc.stdout.fileno(), b"", time.monotonic() + seconds
    while len(data) < cap:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    return data[:cap]


def _read_regular(path: Path, cap: int) -> str:
    """The last `cap` bytes of a regular file the program wrote; a symlink, FIFO or device is not opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        os.lseek(fd, max(0, st.st_size - cap), os.SEEK_SET)
        return os.read(fd, cap).decode("utf-8", "replace")
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete a run dir whatever the program left in it (3,000 nested folders, 0 permissions) without recursing in
    Python (shutil.rmtree recursed into a RecursionError)."""
    if not path.exists():
        return
    subprocess.run(["chmod", "-R", "u+rwx", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _why(res: dict, token: str, limits: Limits) -> tuple[str, str]:
    last = res.get("verdict", "")
    status = res.get("program_status")  # None: the program's process was alive when the judge was done
    if res.get("timed_out"):
        return "timeout", f"killed after {limits.wall_s:g} s of wall time"
    died = status is not None and status - 128 in (signal.SIGXCPU, signal.SIGKILL)
    if died and not last.startswith(("FAIL", "BROKEN", "POWERLESS")):
        return "timeout", f"killed by signal {signal.Signals(status - 128).name} (CPU limit {limits.cpu_s:g} s)"
    if last.startswith("BROKEN "):
        return "tests broken", last[len("BROKEN "):]
    if last.startswith("POWERLESS "):
        return "tests powerless", last[len("POWERLESS "):]
    if last.startswith("FAIL assertion"):
        return "assertion failed", last[len("FAIL assertion"):].strip() or "an assert was false"
    if last.startswith(("ERROR program MemoryError", "ERROR tests MemoryError")):  # the type, not a message
        return "memory", f"memory limit {limits.memory_mb} MB"
    if last.startswith("ERROR tests"):
        return "tests broken", last[len("ERROR tests"):].strip()
    if last.startswith("ERROR program"):
        return "exception", last[len("ERROR program"):].strip()[:300]
    return "exception", f"no verdict from the judge (program exit status {status})"


class SandboxPool:
    """Run many programs in parallel, one slot per worker thread; as root each slot holds a uid claimed for this
    pool alone (UidClaim) for as long as the pool runs."""

    def __init__(self, workers: int = 2, limits: Limits = Limits(), unisolated_ok: bool = False):
        self.workers, self.limits, self.unisolated_ok = workers, limits, unisolated_ok

    def run_many(self, jobs: list[tuple[str, str]]) -> list[Run]:
        import queue

        claims = [UidClaim() for _ in range(self.workers)] if isolation_mode() == "root" else [None] * self.workers
        free: queue.Queue = queue.Queue()
        for c in claims:
            free.put(c)

        def one(job):
            c = free.get()
            try:
                return run_program(job[0], job[1], self.limits, claim=c, unisolated_ok=self.unisolated_ok)
            finally:
                free.put(c)

        try:
            with ThreadPoolExecutor(self.workers) as ex:
                return list(ex.map(one, jobs))
        finally:
            for c in claims:
                if c is not None:
                    c.release()
