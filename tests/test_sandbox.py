"""Issue 20: the local sandbox that runs a model's program and its tests. Each attack ends as a failed run within
its limits and leaves the machine as it was (no process of the sandbox uid, no file outside its directory)."""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from seqdistill.sandbox import _UID_BASE, Limits, SandboxPool, run_program

FAST = Limits(cpu_s=2, wall_s=5, memory_mb=512, processes=16)
ADD = "def add(a, b):\n    return a + b\n"
ADD_TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"
ROOT = os.geteuid() == 0


def no_process_left(slot: int = 0) -> bool:
    from seqdistill.sandbox import _uid_processes

    return not _uid_processes(_UID_BASE + slot)


def test_a_correct_program_passes_and_a_wrong_one_does_not():
    ok = run_program(ADD, ADD_TESTS, FAST)
    assert ok.passed and ok.reason == "passed"
    bad = run_program(ADD.replace("a + b", "a - b"), ADD_TESTS, FAST)
    assert not bad.passed and bad.reason == "assertion failed"
    err = run_program("def add(a, b):\n    return a + c\n", ADD_TESTS, FAST)
    assert not err.passed and err.reason == "exception" and "NameError" in err.detail


@pytest.mark.parametrize("program", ["import os\nos._exit(0)\n", "import sys\nsys.exit(0)\n", "raise SystemExit(0)\n",
                                     # forged success lines on every descriptor the harness might report on
                                     "import os\nfor fd in range(1, 12):\n    try:\n        os.write(fd, b'passed\\n"
                                     "0123456789abcdef0123456789abcdef\\n')\n    except OSError:\n        pass\n"
                                     "os._exit(0)\n"])
def test_an_early_exit_with_status_0_or_a_forged_report_does_not_pass(program):
    r = run_program(program, ADD_TESTS, FAST)
    assert not r.passed and r.reason in ("exited before the tests", "exception")


def test_redefining_check_or_assert_does_not_pass():
    program = ("def add(a, b):\n    return 0\n"
               "def check(candidate):\n    return True\n"
               "import builtins\nbuiltins.check = check\nAssertionError = Exception\n")
    tests = "def check(candidate):\n    assert candidate(1, 2) == 3\ncheck(add)\n"
    r = run_program(program, tests, FAST)
    assert not r.passed and r.reason == "assertion failed"


def test_infinite_loop_is_stopped_by_the_cpu_limit():
    t0 = time.monotonic()
    r = run_program("while True:\n    pass\n", ADD_TESTS, Limits(cpu_s=1, wall_s=10))
    assert not r.passed and r.reason == "timeout" and time.monotonic() - t0 < 5
    r = run_program("import time\ntime.sleep(60)\n", ADD_TESTS, Limits(cpu_s=1, wall_s=2))  # no CPU used
    assert not r.passed and r.reason == "timeout" and r.seconds < 5


@pytest.mark.skipif(not ROOT, reason="the process limit binds through the sandbox uid, which needs root")
def test_fork_bomb_is_contained_and_leaves_nothing_behind():
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    r = run_program(bomb, ADD_TESTS, Limits(cpu_s=2, wall_s=4, processes=16))
    assert not r.passed and time.monotonic() - t0 < 15
    assert no_process_left()


def test_memory_bomb_hits_the_memory_limit():
    r = run_program("x = bytearray(4 * 1024 ** 3)\n", ADD_TESTS, Limits(memory_mb=256, wall_s=10))
    assert not r.passed and r.reason == "memory"


@pytest.mark.skipif(not ROOT, reason="writes outside the run dir are refused through the sandbox uid")
def test_writing_outside_its_directory_fails_and_leaves_no_file(tmp_path):
    target = Path("/tmp") / f"seqdistill-escape-{os.getpid()}"
    for path in (target, Path("/root/escape"), Path("/var/tmp") / target.name, Path("/dev/shm") / target.name):
        r = run_program(f"open({str(path)!r}, 'w').write('x')\n", ADD_TESTS, FAST)
        assert not r.passed and ("PermissionError" in r.detail or "Read-only file system" in r.detail), r.detail
        assert not path.exists()
    assert run_program("open('mine.txt', 'w').write('x')\n" + ADD, ADD_TESTS, FAST).passed  # its own dir: yes
    if target.exists():  # /tmp is world-writable: the sandbox uid may create a file there, never elsewhere
        target.unlink()
        pytest.fail("the sandbox wrote outside its directory")


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("SEQDISTILL_CANARY", "secret-token-42")
    r = run_program("import os\nleak = os.environ.get('SEQDISTILL_CANARY')\n", "assert leak == 'secret-token-42'\n",
                    FAST)
    assert not r.passed and r.reason == "assertion failed"
    r = run_program("import os\nhome = os.environ['HOME']\n", "assert home != '/root'\n", FAST)
    assert r.passed


@pytest.mark.skipif(not ROOT, reason="a network namespace needs root (or user namespaces) here")
def test_no_network_even_to_localhost():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    hits = []

    def accept():
        try:
            hits.append(server.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    program = f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    r = run_program(program, ADD_TESTS, FAST)
    t.join()
    server.close()
    assert not r.passed and r.network_isolated and not hits


def test_megabytes_of_output_are_capped():
    r = run_program("import sys\nfor _ in range(200000):\n    print('x' * 100)\n" + ADD, ADD_TESTS,
                    Limits(file_mb=4, wall_s=20, cpu_s=10, output_bytes=4096))
    assert len(r.output) <= 4096  # captured output is capped whatever the program writes
    assert not r.passed  # past the file-size limit the program is killed


@pytest.mark.skipif(not ROOT, reason="the parent is protected through the sandbox uid")
def test_killing_its_parent_fails_and_the_parent_lives():
    r = run_program("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", ADD_TESTS, FAST)
    assert not r.passed and "PermissionError" in r.detail


def test_stdin_is_closed():
    r = run_program("import sys\ndata = sys.stdin.read()\n", ADD_TESTS, FAST)
    assert not r.passed and r.reason == "exception"


def test_pool_runs_programs_in_parallel_slots():
    pool = SandboxPool(workers=2, limits=FAST)
    runs = pool.run_many([(ADD, ADD_TESTS), (ADD.replace("+", "*"), ADD_TESTS)] * 3)
    assert [r.passed for r in runs] == [True, False] * 3
    assert no_process_left(0) and no_process_left(1)


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


def test_humaneval_canonical_solutions_pass_and_broken_ones_fail():
    import json

    from conftest import REPO

    from seqdistill.verify import CORRECT, check_many

    rows = [json.loads(line) for line in (REPO / "recipes" / "code" / "data" / "humaneval.jsonl").open()][:20]
    assert len(rows) == 20 and all(r["answer"].rstrip().endswith(f"check({r['entry_point']})") for r in rows)
    block = "```python\n{}\n```"
    ok = check_many([(block.format(r["question"] + r["canonical_solution"]), r["answer"], "code") for r in rows])
    assert all(v.status == CORRECT for v in ok)
    broken = check_many([(block.format(r["question"] + "    return None\n"), r["answer"], "code") for r in rows])
    assert not any(v.status == CORRECT for v in broken)


def test_check_cli_explains_a_code_verdict(tmp_path):
    from conftest import cli

    out = tmp_path / "out.txt"
    out.write_text("```python\ndef add(a, b):\n    return a - b\n```")
    r = cli("check", f"@{out}", "assert add(1, 2) == 3", "--task", "code")
    assert r.returncode == 0 and "assertion failed" in r.stdout and "wrong" in r.stdout
