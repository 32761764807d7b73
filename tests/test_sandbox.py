"""The sandbox that runs a model's program, attacked as a hostile or sloppy model would (docs/code.md). Each attack
ends as a run that does not pass, within its limits, and the test asserts on what leaked or survived, not only on
the verdict. Run as root (CI) and, where the test can drop to an unprivileged user, as that user too."""

import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO

from seqdistill.sandbox import _UID_BASE, _UID_COUNT, Limits, SandboxPool, isolation_mode, run_program

FAST = Limits(cpu_s=2, wall_s=6, memory_mb=512, processes=16)
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="dropping to an unprivileged user needs root")


def sandbox_processes() -> list[str]:
    """Processes of any sandbox uid now alive, zombies aside (pid: command), read from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and _UID_BASE <= d.stat().st_uid < _UID_BASE + _UID_COUNT \
                    and (d / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(f"{d.name}: {(d / 'cmdline').read_bytes()[:80]!r}")
        except (OSError, IndexError):
            continue
    return out


_COPY: list[str] = []


def _world_readable_package() -> str:
    """The sandbox's modules (stdlib only) copied where `nobody` can read them: the checkout may sit under a
    private directory (/root)."""
    import shutil
    import tempfile

    if not _COPY:
        root = Path(tempfile.mkdtemp(prefix="seqdistill-nobody-"))
        (root / "seqdistill").mkdir()
        for name in ("__init__.py", "sandbox.py", "judge.py"):
            shutil.copy(REPO / "seqdistill" / name, root / "seqdistill" / name)
        for p in (root, root / "seqdistill", *(root / "seqdistill").iterdir()):
            p.chmod(0o755)
        _COPY.append(str(root))
    return _COPY[0]


def as_nobody(program: str, tests: str, limits: Limits = FAST, env: dict | None = None) -> dict:
    """run_program in a process of user `nobody` (the system python, seqdistill from the checkout): what a user
    without root gets. Returns the Run as a dict."""
    code = ("import json, sys; sys.path.insert(0, %r)\nfrom seqdistill.sandbox import run_program, Limits\n"
            "r = run_program(sys.argv[1], sys.argv[2], Limits(**json.loads(sys.argv[3])))\n"
            "print(json.dumps(r.__dict__))\n") % _world_readable_package()
    nobody = pwd.getpwnam("nobody")

    def drop():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    limits_json = json.dumps({k: getattr(limits, k) for k in limits.__dataclass_fields__})
    res = subprocess.run(["/usr/bin/python3", "-c", code, program, tests, limits_json], capture_output=True,
                         text=True, preexec_fn=drop, cwd="/", env={"PATH": "/usr/bin:/bin", **(env or {})},
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def both(program, tests, limits=FAST, env=None):
    """The run as this process (root in CI) and, where possible, as nobody."""
    runs = [run_program(program, tests, limits).__dict__]
    if ROOT and Path("/usr/bin/python3").exists():
        runs.append(as_nobody(program, tests, limits, env))
    return runs


# ------------------------------------------------------------------ verdicts
def test_a_correct_program_passes_and_a_wrong_one_does_not():
    for r in both(ADD, ADD_TESTS):
        assert r["passed"] and r["reason"] == "passed" and r["network_isolated"]
    bad = run_program(ADD.replace("a + b", "a - b"), ADD_TESTS, FAST)
    assert not bad.passed and bad.reason == "assertion failed"
    err = run_program("def add(a, b):\n    return a + c\n", ADD_TESTS, FAST)
    assert not err.passed and err.reason == "exception" and "NameError" in err.detail


def test_realistic_test_forms_work_across_the_process_boundary():
    cases = [  # (program, tests): every one must pass
        ("def srt(a):\n    a.sort()\n", "x = [3, 1, 2]\nsrt(x)\nassert x == [1, 2, 3]\n"),  # in-place change
        ("class Pair:\n    def __init__(s, a, b):\n        s.a, s.b = a, b\n"
         "def tot(ps):\n    return sum(p.a + p.b for p in ps)\n", "assert tot([Pair(1, 2), Pair(3, 4)]) == 10\n"),
        ("def f(x):\n    if x < 0:\n        raise ValueError('neg')\n    return x\n",
         "try:\n    f(-1)\n    assert False\nexcept ValueError:\n    pass\nassert f(2) == 2\n"),
        ("def g(n):\n    return (i * i for i in range(n))\n", "assert list(g(3)) == [0, 1, 4]\n"),
        ("def t():\n    return (1, 2)\n", "assert t() == (1, 2) and t() != [1, 2]\n"),
        ("from collections import Counter\ndef c(s):\n    return Counter(s)\n",
         "assert c('aab') == {'a': 2, 'b': 1}\n"),
        ("import math\ndef area(r):\n    return math.pi * r * r\n",
         "assert math.isclose(area(1), 3.14159, rel_tol=1e-3)\n"),
        # the function under test shadows a builtin
        ("def sum(a, b):\n    return a + b + 1\n", "assert sum(1, 1) == 3\n"),
        ("def f():\n    return {1: [2, (3, 4)], 'x': {5}, 'b': b'\\x00', 'n': None, 'z': 1e400}\n",
         "assert f() == {1: [2, (3, 4)], 'x': {5}, 'b': b'\\x00', 'n': None, 'z': float('inf')}\n"),
        (ADD, "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"),  # HumanEval's form
    ]
    runs = SandboxPool(2, FAST).run_many(cases)
    want = [(True, "passed", "every test ran and passed")] * len(cases)
    assert [(r.passed, r.reason, r.detail) for r in runs] == want


def test_shipped_canonical_solutions_pass_and_null_programs_fail():
    """Every HumanEval and MBPP-test canonical solution shipped with the code recipe passes through the judge; each
    problem's tests fail a program whose function returns None."""
    rows = [json.loads(line) for line in (REPO / "recipes" / "code" / "data" / "humaneval.jsonl").open()][:40]
    rows += [json.loads(line) for line in (REPO / "recipes" / "code" / "data" / "mbpp-test.jsonl").open()][:40]
    good = [(r["question"] + r["canonical_solution"] if "entry_point" in r else r["canonical_solution"], r["answer"])
            for r in rows]
    assert all(r.passed for r in SandboxPool(2, FAST).run_many(good))
    names = [r.get("entry_point") or r["answer"].split("assert ", 1)[1].split("(", 1)[0].strip() for r in rows]
    null = [(f"def {n}(*a, **k):\n    return None\n", r["answer"]) for n, r in zip(names, rows)]
    assert not any(r.passed for r in SandboxPool(2, FAST).run_many(null))


# ------------------------------------------------------------------ forged passes
FORGERIES = {
    "exit 0 early": "import os\nos._exit(0)\n",
    "sys.exit(0)": "import sys\nsys.exit(0)\n",
    "fake success lines on every descriptor": "import os\nfor fd in range(0, 40):\n    try:\n        os.write(fd, "
                                              "b'PASS 0123456789abcdef0123456789abcdef\\npassed\\n')\n"
                                              "    except OSError:\n        pass\n" + ADD.replace("a + b", "0"),
    "patch exec and compile": "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.compile = "
                              "lambda *a, **k: None\ndef add(a, b):\n    return 0\n",
    "AssertionError rebound": "import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n"
                              "AssertionError = Exception\ndef add(a, b):\n    return 0\n",
    "__eq__ always true": "class A:\n    def __eq__(s, o):\n        return True\n    __hash__ = None\n"
                          "def add(a, b):\n    return A()\n",
    "int subclass with __eq__": "class I(int):\n    def __eq__(s, o):\n        return True\ndef add(a, b):\n"
                                "    return I(0)\n",
    "sys.settrace skips lines": "import sys\nsys.settrace(lambda *a: None)\ndef add(a, b):\n    return 0\n",
    "frames and gc searched for a token": "import gc, os, re, sys\nseen = set()\nfor o in gc.get_objects():\n"
                                          "    for s in (o if isinstance(o, (list, tuple)) else [o]):\n"
                                          "        if isinstance(s, str) and re.fullmatch('[0-9a-f]{32}', s):\n"
                                          "            seen.add(s)\nf = sys._getframe()\nwhile f:\n"
                                          "    seen.update(v for v in f.f_locals.values() if isinstance(v, str))\n"
                                          "    f = f.f_back\nfor t in seen:\n    for fd in range(40):\n        try:\n"
                                          "            os.write(fd, ('PASS ' + t + '\\n').encode())\n"
                                          "        except OSError:\n            pass\n"
                                          "def add(a, b):\n    return 0\n",
    "patched math.isclose": "import math\nmath.isclose = lambda *a, **k: True\ndef add(a, b):\n    return 0\n",
    "sys.modules surgery": "import sys, types\nm = types.ModuleType('builtins')\nsys.modules['builtins'] = m\n"
                           "def add(a, b):\n    return 0\n",
    "redefines check": "def add(a, b):\n    return 0\ndef check(candidate):\n    return True\n"
                       "import builtins\nbuiltins.check = check\n",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_no_trick_passes_a_wrong_program(name):
    tests = ADD_TESTS + "assert math.isclose(add(0.5, 0.25), 0.75)\n" if "math" in name else ADD_TESTS
    if "math" in name:
        tests = "import math\n" + tests
    if name == "redefines check":
        tests = "def check(candidate):\n    assert candidate(1, 2) == 3\ncheck(add)\n"
    for r in both(FORGERIES[name], tests):
        assert not r["passed"], (name, r)


# ------------------------------------------------------------------ tests without power, broken tests
@pytest.mark.parametrize("tests", ["pass\n", "# a comment\n", "", "[1, 2]\n", "42\n", "{'a': 1}\n",
                                   "def check(candidate):\n    assert candidate(1, 2) == 3\n",  # never called
                                   "x = add\n", "assert add is not None\n"])
def test_tests_that_test_nothing_never_pass(tests):
    r = run_program(ADD, tests, FAST)
    assert not r.passed and r.reason == "tests powerless", r


def test_broken_tests_are_blamed_not_the_program():
    r = run_program(ADD, "assert add(1, 2) ==\n", FAST)
    assert not r.passed and r.reason == "tests broken" and "SyntaxError" in r.detail
    r = run_program(ADD, "assert add(1, 2) == 3\nassert helper_the_tests_forgot(1) == 2\n", FAST)
    assert not r.passed and r.reason == "exception" and "helper_the_tests_forgot" in r.detail
    r = run_program(ADD, "import no_such_module_anywhere\nassert add(1, 2) == 3\n", FAST)
    assert not r.passed and r.reason == "tests broken" and "ModuleNotFoundError" in r.detail


# ------------------------------------------------------------------ hangs and crashes of the stage
def test_a_setsid_child_holding_the_pipes_neither_hangs_the_run_nor_survives_it():
    program = ("import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
               "        os.setpgid(0, 0) if False else None\n        time.sleep(300)\n" + ADD)
    t0 = time.monotonic()
    for r in both(program, ADD_TESTS):
        assert r["passed"]
    assert time.monotonic() - t0 < 60
    assert sandbox_processes() == []


def test_an_output_fifo_or_symlink_is_never_opened_by_the_parent():
    fifo = "import os\nos.remove('output.txt')\nos.mkfifo('output.txt')\n" + ADD
    link = "import os\nos.remove('output.txt')\nos.symlink('/etc/shadow', 'output.txt')\n" + ADD
    t0 = time.monotonic()
    for program in (fifo, link):
        r = run_program(program, ADD_TESTS, FAST)
        assert r.passed and r.output == ""  # nothing read through the link, no block on the FIFO
    assert time.monotonic() - t0 < 20


def test_loops_sleeps_and_hanging_calls_end_at_the_limits():
    slow = Limits(cpu_s=1, wall_s=2)
    for program in ("while True:\n    pass\n", "import time\ntime.sleep(60)\n",
                    "def add(a, b):\n    while True:\n        pass\n", "def add(a, b):\n    import time\n"
                    "    time.sleep(60)\n"):
        t0 = time.monotonic()
        r = run_program(program, ADD_TESTS, slow)
        assert not r.passed and r.reason == "timeout" and time.monotonic() - t0 < slow.wall_s + 6, (program, r)


def test_thousands_of_nested_folders_are_cleaned_up():
    before = set(Path("/tmp").glob("seqdistill-sandbox-*"))
    program = "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\nos.chmod('.', 0)\n" + ADD
    r = run_program(program, ADD_TESTS, Limits(cpu_s=5, wall_s=20))
    assert r.passed
    assert set(Path("/tmp").glob("seqdistill-sandbox-*")) == before


def test_a_huge_answer_is_cut_off_not_buffered():
    program = "def add(a, b):\n    return 'x' * (50 << 20)\n"
    r = run_program(program, ADD_TESTS, Limits(cpu_s=5, wall_s=20, memory_mb=1024))
    assert not r.passed and r.reason in ("exception", "memory")


def test_fork_bomb_is_contained_and_leaves_nothing_behind():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    for r in both(bomb, ADD_TESTS, Limits(cpu_s=2, wall_s=4, processes=16)):
        assert not r["passed"]
    assert time.monotonic() - t0 < 60 and sandbox_processes() == []


def test_memory_bomb_hits_the_memory_limit():
    r = run_program("x = bytearray(4 * 1024 ** 3)\n", ADD_TESTS, Limits(memory_mb=256, wall_s=10))
    assert not r.passed and r.reason == "memory" and r.detail == "memory limit 256 MB"


# ------------------------------------------------------------------ isolation, as root and as nobody
def test_no_write_outside_its_directory(tmp_path):
    os.chmod(tmp_path, 0o777)  # writable by anyone: only the sandbox stands between the program and it
    targets = [tmp_path / "escape", Path("/tmp") / f"seqdistill-escape-{os.getpid()}",
               Path("/var/tmp") / f"seqdistill-escape-{os.getpid()}", Path("/dev/shm") / f"escape-{os.getpid()}"]
    program = "".join(f"try:\n    open({str(t)!r}, 'w').write('x')\nexcept OSError:\n    pass\n" for t in targets)
    for r in both(program + "open('mine.txt', 'w').write('ok')\n" + ADD, ADD_TESTS):
        assert r["passed"]  # its own dir is writable
    assert [t for t in targets if t.exists()] == []


def test_environment_and_the_parents_secrets_do_not_leak(monkeypatch):
    canary = "sk-canary-" + os.urandom(6).hex()
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    program = ("import os, glob\nfound = [k for k, v in os.environ.items() if 'canary' in v]\n"
               "for p in glob.glob('/proc/*/environ'):\n    try:\n        found.append(open(p, 'rb').read().decode("
               "'latin-1'))\n    except OSError:\n        pass\nprint('FOUND', found)\n" + ADD)
    for r in both(program, ADD_TESTS, env={"OPENAI_API_KEY": canary}):
        assert r["passed"] and canary not in r["output"]


def test_no_network_even_to_localhost():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    hits = []

    def accept():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                hits.append(server.accept())
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    program = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
               "    print('CONNECTED')\nexcept OSError as e:\n    print('refused', e)\n" + ADD)
    runs = both(program, ADD_TESTS)
    server.close()
    assert not hits and all("CONNECTED" not in r["output"] and r["network_isolated"] for r in runs)


def test_the_program_cannot_signal_trace_or_limit_its_parents():
    """It sees only its own PID namespace: every pid it can name is its own (PID 1) or its children; the parent
    (this test process) and the launcher stay unreachable, and a SIGSTOP to its process group stops only itself."""
    program = ("import os, signal, json\n"
               "seen = sorted({int(p) for p in os.listdir('/proc') if p.isdigit()} | {os.getppid()})\n"
               "print('SEEN', json.dumps(seen))\nimport resource\ntry:\n"
               "    resource.prlimit(%d, resource.RLIMIT_NOFILE, (1, 1))\n    print('PRLIMITED')\n"
               "except Exception:\n    pass\ntry:\n    os.kill(%d, signal.SIGSTOP)\n    print('STOPPED')\n"
               "except OSError:\n    pass\n" % (os.getpid(), os.getpid()) + ADD)
    for r in both(program, ADD_TESTS):
        assert r["passed"] and "PRLIMITED" not in r["output"] and "STOPPED" not in r["output"], r["output"]
        seen = json.loads(r["output"].split("SEEN", 1)[1].split("\n", 1)[0])
        assert seen == [0, 1], seen  # pid 0: no parent visible; pid 1: itself
    assert Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T"  # not stopped
    # its own group holds only itself, PID 1 of its namespace, which the kernel shields from its own SIGSTOP
    t0 = time.monotonic()
    r = run_program("import os, signal\nos.kill(0, signal.SIGSTOP)\n" + ADD, ADD_TESTS, Limits(cpu_s=1, wall_s=3))
    assert time.monotonic() - t0 < 10 and sandbox_processes() == []


def test_shared_memory_does_not_outlive_the_run():
    program = ("import ctypes\nlibc = ctypes.CDLL(None)\nshm = libc.shmget(0x5eed, 64 << 20, 0o1000 | 0o666)\n"
               "print('shm', shm)\n" + ADD)
    before = Path("/proc/sysvipc/shm").read_text()
    r = run_program(program, ADD_TESTS, FAST)
    assert r.passed and "shm -1" not in r.output  # it made one, in its own IPC namespace
    assert Path("/proc/sysvipc/shm").read_text() == before


def test_a_leftover_process_cannot_rewrite_a_later_runs_tests():
    program = ("import os, glob, time\nif os.fork() == 0:\n    os.setsid()\n    end = time.time() + 20\n"
               "    while time.time() < end:\n        for d in glob.glob('/tmp/seqdistill-sandbox-*'):\n"
               "            for f in ('tests.py', 'prog/program.py'):\n                try:\n"
               "                    open(os.path.join(d, f), 'w').write('pass\\n')\n"
               "                except OSError:\n                    pass\n        time.sleep(0.01)\n" + ADD)
    run_program(program, ADD_TESTS, FAST)
    later = [run_program(ADD.replace("a + b", "a * b"), ADD_TESTS, FAST) for _ in range(4)]
    assert not any(r.passed for r in later) and sandbox_processes() == []


# ------------------------------------------------------------------ two pools in two processes
def test_two_pools_in_two_processes_give_every_verdict_right():
    code = ("import json, sys; sys.path.insert(0, %r)\nfrom seqdistill.sandbox import SandboxPool, Limits\n"
            "good = 'import time\\ntime.sleep(0.3)\\ndef add(a, b):\\n    return a + b\\n'\n"
            "bad = good.replace('a + b', 'a - b')\n"
            "runs = SandboxPool(2, Limits(cpu_s=2, wall_s=10)).run_many([(good, %r), (bad, %r)] * 6)\n"
            "print(json.dumps([r.passed for r in runs]))\n") % (str(REPO), ADD_TESTS, ADD_TESTS)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=180)[0].strip().splitlines()[-1]) for p in procs]
    assert outs == [[True, False] * 6] * 2


def test_uid_claims_are_exclusive_and_skip_uids_with_live_processes():
    if isolation_mode() != "root":
        pytest.skip("uids are claimed as root only")
    from seqdistill.sandbox import UidClaim

    a, b = UidClaim(), UidClaim()
    assert a.uid != b.uid
    held = a.uid
    a.release()
    squat = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: (os.setgid(held), os.setuid(held)))
    try:
        c = UidClaim()
        assert c.uid not in (held, b.uid)  # a uid owning a process (someone else's) is never used nor killed
        c.release()
    finally:
        squat.kill()
        squat.wait()
        b.release()


def test_pool_runs_programs_in_parallel_slots():
    runs = SandboxPool(workers=2, limits=FAST).run_many([(ADD, ADD_TESTS), (ADD.replace("+", "*"), ADD_TESTS)] * 3)
    assert [r.passed for r in runs] == [True, False] * 3
    assert sandbox_processes() == []


# ------------------------------------------------------------------ task: code through the verifier
def test_code_task_verifies_the_last_python_block_by_execution():
    from seqdistill.verify import CORRECT, WRONG, check_many

    tests = "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"
    good = "<think>\nadd them\n</think>\nFirst try:\n```python\ndef add(a, b):\n    return a - b\n```\n" \
           "Fixed:\n```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a * b\n```"
    no_block = "def add(a, b): return a + b"
    thinking_only = "<think>\n```python\ndef add(a, b):\n    return a + b\n```\n"  # never closed: no answer
    got = check_many([(t, tests, "code") for t in (good, wrong, no_block, thinking_only)], workers=2)
    assert [v.status for v in got] == [CORRECT, WRONG, WRONG, WRONG]
    assert [v.reason for v in got] == ["passed", "assertion failed", "no code block", "no code block"]


def test_check_cli_explains_a_code_verdict(tmp_path):
    from conftest import cli

    out = tmp_path / "out.txt"
    out.write_text("```python\ndef add(a, b):\n    return a - b\n```")
    tests = tmp_path / "tests.py"
    tests.write_text("assert add(1, 2) == 3\n")
    for gold in ("assert add(1, 2) == 3", f"@{tests}"):
        r = cli("check", f"@{out}", gold, "--task", "code")
        assert r.returncode == 0 and "assertion failed" in r.stdout and "wrong" in r.stdout, r.stdout


def test_recipe_limits_reach_the_program_and_unisolated_runs_are_refused(monkeypatch):
    from seqdistill import sandbox as sb
    from seqdistill.config import SandboxConfig
    from seqdistill.errors import ConfigError
    from seqdistill.verify import CORRECT, check_many

    prog = "```python\nimport time\ntime.sleep(3)\ndef add(a, b):\n    return a + b\n```"
    slow = check_many([(prog, ADD_TESTS, "code")], sandbox=SandboxConfig(wall_s=1.5))[0]
    assert slow.reason == "timeout" and "1.5 s" in slow.detail  # sandbox.wall_s, not the verifier's timeout_s
    assert check_many([(prog, ADD_TESTS, "code")], sandbox=SandboxConfig(wall_s=8))[0].status == CORRECT
    monkeypatch.setattr(sb, "isolation_mode", lambda: "none")
    with pytest.raises(ConfigError, match="sandbox.allow_unisolated"):
        check_many([(prog, ADD_TESTS, "code")])


def test_a_code_prompt_set_names_its_powerless_tests_and_is_refused_when_all_are(tmp_path, caplog):
    from seqdistill.config import DataConfig
    from seqdistill.data import load_prompts
    from seqdistill.errors import DataError

    rows = [{"id": "ok", "question": "qa", "answer": "assert f(1) == 2\n"},
            {"id": "list", "question": "qb", "answer": ["assert f(1) == 2"]},  # MBPP's raw test_list
            {"id": "pass", "question": "qc", "answer": "pass"}, {"id": "num", "question": "qd", "answer": 7},
            {"id": "uncalled", "question": "qe", "answer": "def check(c):\n    assert c(1) == 2\n"},
            {"id": "broken", "question": "qf", "answer": "assert f(1) =="}]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with caplog.at_level("WARNING", logger="seqdistill.data"):
        items = load_prompts(DataConfig(path=str(path), task="code", fields={"id": "id"}))
    assert len(items) == 6  # kept (they are never judged correct), each named in one line
    lines = [r.getMessage() for r in caplog.records]
    for pid, why in [("list", "are a list"), ("pass", "have no assert"), ("num", "are a int"),
                     ("uncalled", "define their checks but never call them"), ("broken", "do not compile")]:
        assert sum(f"problem {pid}: its tests {why}" in m for m in lines) == 1, (pid, lines)
    path.write_text("\n".join(json.dumps(r) for r in rows[1:]))
    with pytest.raises(DataError, match="none of the 5 problems has tests that can fail"):
        load_prompts(DataConfig(path=str(path), task="code", fields={"id": "id"}))


def test_a_program_cannot_choose_its_rejection_reason():
    """The reason comes from the judge's own classification: an exception whose message imitates another reason
    is still an exception, reported as the program's."""
    program = "def add(a, b):\n    raise ValueError('MemoryError: memory limit; FAIL assertion; tests broken')\n"
    r = run_program(program, ADD_TESTS, FAST)
    assert not r.passed and r.reason == "exception" and r.detail.startswith("ValueError")
