"""task: code end to end: generate -> filter -> eval, every verdict decided by running the program in the sandbox.

The models are a local OpenAI-compatible server that answers each problem with a chosen program, so the
expected verdicts, pass rates and pass@k are known exactly (a tiny random model writes no programs)."""

import json
import threading
from http.server import BaseHTTPRequestHandler

import pyarrow.parquet as pq
import pytest
from fakes import QuietServer, send_json

from seqdistill.evaluate import run_eval
from seqdistill.filter import run_filter
from seqdistill.generate import run_generate
from seqdistill.report import filter_summary
from seqdistill.store import Store

PROBLEMS = {  # id: (function, tests)
    "add": ("add", "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"),
    "mul": ("mul", "assert mul(2, 3) == 6\nassert mul(0, 5) == 0\n"),
    "rev": ("rev", "assert rev('ab') == 'ba'\nassert rev('') == ''\n"),
    "half": ("half", "assert half(4) == 2\nassert half(9) == 4\n"),
}
RIGHT = {"add": "return a + b", "mul": "return a * b", "rev": "return s[::-1]", "half": "return n // 2"}
ARGS = {"add": "a, b", "mul": "a, b", "rev": "s", "half": "n"}


def program(pid, body, nth=0):
    return f"Reasoning, try {nth}.\n\n```python\ndef {PROBLEMS[pid][0]}({ARGS[pid]}):\n    {body}\n```"


def student_answer(pid, nth):
    """The student: right on add; a wrong formula on mul; no code block on rev; on half, right on its first
    request and then wrong (2 samples: pass@1 0.5, pass@2 1); an early sys.exit(0) never passes."""
    if pid == "add":
        return program(pid, RIGHT[pid], nth)  # distinct texts: the filter's dedup would keep one
    if pid == "mul":
        return program(pid, "return a + b", nth)
    if pid == "rev":
        return "I would reverse it with slicing, but I will not write the code."
    if nth == 0:
        return program(pid, RIGHT[pid])
    return "```python\nimport sys\nsys.exit(0)\n```"


class FakeModels(BaseHTTPRequestHandler):
    """`teacher` in the served model name: every answer right; otherwise the student above. Counts the requests
    per (model, problem) so the student's n-th sample of a problem is known."""

    seen: dict = {}
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        pid = next(p for p in PROBLEMS if f"function {PROBLEMS[p][0]}(" in user)
        teacher = "teacher" in body["model"]
        with FakeModels.lock:
            nth = FakeModels.seen.get((teacher, pid), 0)
            FakeModels.seen[(teacher, pid)] = nth + 1
        text = program(pid, RIGHT[pid]) if teacher else student_answer(pid, nth)
        send_json(self, 200, {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                              "usage": {"prompt_tokens": 20, "completion_tokens": len(text.split())}})


@pytest.fixture
def server():
    FakeModels.seen = {}
    srv = QuietServer(("127.0.0.1", 0), FakeModels)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def problems_file(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"id": pid, "question": f"Write a function {fn}({ARGS[pid]}).\nYour code "
                                        f"should pass these tests:\n\n{tests}", "answer": tests}) + "\n"
                            for pid, (fn, tests) in PROBLEMS.items()))
    return {"path": str(path), "synthetic": None, "fields": {"id": "id"}, "task": "code"}


def openai(url, model=None):
    return {"base_url": url, "api_key_env": None, "concurrency": 2, "timeout_s": 10.0,
            **({"model": model} if model else {})}


def test_filter_keeps_only_programs_that_pass_their_tests(make_cfg, tmp_path, server):
    """The student profile as a teacher, 2 samples a problem: kept = the passing programs only; every rejection
    says why, from the sandbox run."""
    cfg = make_cfg(data=problems_file(tmp_path), prompt={"template": "code_python"},
                   generate={"backend": "openai", "batch_size": 4, "openai": openai(server, "fake-student"),
                             "sampling": {"n": 2, "max_tokens": 64}},
                   filter={"num_workers": 2})
    run_generate(cfg)
    out = run_filter(cfg)
    kept = sorted((r["prompt_id"], r["sample_index"]) for r in Store(out, "kept").records())
    first_half = next(r["sample_index"] for r in Store(cfg.stage_dir("generate")).records()
                      if r["prompt_id"] == "half" and "sys.exit" not in r["completion"])
    assert kept == [("add", 0), ("add", 1), ("half", first_half)]
    why = {(r["prompt_id"], r["sample_index"]): (r["reject_reason"], r["verify_reason"], r["verify_detail"])
           for r in Store(out, "rejected").records()}
    assert len(why) == 5 and all(reason == "wrong_answer" for reason, _, _ in why.values())
    assert {why[("mul", j)][1] for j in (0, 1)} == {"assertion failed"}
    assert {why[("rev", j)][1] for j in (0, 1)} == {"no code block"}
    assert why[("half", 1 - first_half)][1] == "exception" and "SystemExit" in why[("half", 1 - first_half)][2]
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["kept"], stats["rejected"], stats["verdicts"]) == (3, 5, {"correct": 3, "wrong": 5})
    assert stats["not_correct_reasons"] == {"assertion failed": 2, "no code block": 2, "exception": 1}
    assert "not correct, verifier's reason: assertion failed 2, no code block 2, exception 1" in filter_summary(stats)


def test_eval_scores_programs_by_execution_with_pass_at_k_and_the_paired_comparison(make_cfg, tmp_path, server):
    """Teacher right everywhere; student right on add, half 1 of 2: accuracy (mean pass@1) 3/8, pass@2 2/4,
    and the paired comparison of the two on the same 4 problems."""
    cfg = make_cfg(eval={"data": problems_file(tmp_path), "models": ["teacher", "student"], "backend": "openai",
                         "openai": openai(server), "batch_size": 4, "max_train_overlap": 1.0,
                         "speed_prompts": 0, "sampling": {"n": 2, "temperature": 0.8, "max_tokens": 64}},
                   prompt={"template": "code_python"})
    report = json.loads((run_eval(cfg) / "eval.json").read_text())
    t, s = report["models"]["teacher"], report["models"]["student"]
    assert report["task"] == "code" and report["k"] == 2
    assert t["accuracy"]["mean"] == 1.0 and t["pass@2"]["mean"] == 1.0
    assert s["accuracy"]["mean"] == pytest.approx(3 / 8) and s["pass@1"]["mean"] == pytest.approx(3 / 8)
    assert s["pass@2"]["mean"] == pytest.approx(2 / 4)
    # no majority vote over programs: maj@k is not reported for code (it was once computed over program texts)
    assert "maj@2" not in s and "maj@2" not in s["strict"] and "pass@2" in s["strict"]
    (pair,) = [p for p in report["paired"] if p["model"] == "student"]
    assert pair["against"] == "teacher" and pair["problems"] == 4
    assert pair["diff"] == pytest.approx(3 / 8 - 1)
    scored = pq.read_table(cfg.stage_dir("eval") / "student" / "samples.parquet").to_pylist()
    samples = {(r["prompt_id"], r["verdict"], r["verify_reason"]) for r in scored}
    assert ("mul", "wrong", "assertion failed") in samples and ("rev", "wrong", "no code block") in samples
    # math-verify cannot read programs: no witness agreement is reported for them (it once said "65% agree")
    assert t["witness"] is None and s["witness"] is None
    assert "Outside witness" not in (cfg.stage_dir("eval") / "report.md").read_text()


def test_filter_refuses_majority_labels_for_programs(make_cfg, tmp_path, server):
    """Programs are judged by their tests; a majority "label" over program texts would be a silent guess."""
    from seqdistill.errors import ConfigError

    cfg = make_cfg(data=problems_file(tmp_path), prompt={"template": "code_python"},
                   generate={"backend": "openai", "batch_size": 4, "openai": openai(server, "fake-student"),
                             "sampling": {"n": 2, "max_tokens": 64}},
                   filter={"num_workers": 2, "majority_labels": True})
    run_generate(cfg)
    with pytest.raises(ConfigError, match="filter.majority_labels: .*programs have no majority answer"):
        run_filter(cfg)
    assert not (cfg.stage_dir("filter") / "stats.json").exists()
