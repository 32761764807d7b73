import json

import pytest
from fakes import rec, write_generate_output

from seqdistill.config import validate
from seqdistill.errors import DataError, SeqdistillError
from seqdistill.filter import run_filter
from seqdistill.store import Store

BASE = "we start from forty apples, then two more arrive in a basket, so forty plus two gives 42."


def ok(text=BASE, ans="42"):
    return f"<think>\nLet me add: {text}\n</think>\nThe total is \\boxed{{{ans}}}."


BENCH_Q = "Ava has twelve red apples and gives three of them to her best friend at school today."


def dataset():
    long_ok = ok("first 40, then we count every single apple in the basket one by one to be safe, " * 3)
    return [
        rec("p1", 0, ok()), rec("p1", 1, ok()),  # exact duplicate
        rec("p1", 2, ok(BASE + " Indeed.")),  # near duplicate of sample 0
        rec("p1", 3, ok("we have forty and two more which makes forty two in total")),
        rec("p2", 0, ok(ans="41")),  # wrong
        rec("p2", 1, "<think>\nstill thinking about 42", finish="length"),  # truncated
        rec("p2", 2, "<think>\nstill thinking about 42"),  # unclosed think
        rec("p2", 3, "<think>\nok\n</think>\n   "),  # empty answer
        rec("p3", 0, "<think>\nok\n</think>\nThe answer is 42."),  # no boxed answer
        rec("p3", 1, "<think>\n" + "loop\n" * 30 + "</think>\n\\boxed{42}"),  # garbage (looping)
        rec("p3", 2, ok(), gold=""),  # unverifiable: no gold
        rec("p3", 3, long_ok, tokens=500),  # too long
        rec("p3", 4, ok(), tokens=2),  # too short
        rec("p3", 5, ok("a path with different words entirely leading to the same")),  # correct
        rec("p4", 0, ok(), question=BENCH_Q),  # contaminated
        rec("p5", 0, ok("route one")), rec("p5", 1, ok("a second distinct route of thought"), tokens=30),
        rec("p5", 2, ok("yet another clearly separate derivation path with more words"), tokens=40),
    ]


@pytest.fixture
def filter_cfg(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": BENCH_Q, "answer": "9"}) + "\n")
    write_generate_output(tmp_path / "run" / "generate", dataset())
    return validate({"run_dir": str(tmp_path / "run"), "filter": {
        "min_tokens": 5, "max_tokens": 200, "near_dup_threshold": 0.6, "num_workers": 1,
        "decontaminate": [{"path": str(bench), "name": "bench"}], "select": "shortest_k", "k": 2}})


def test_every_rejection_reason_and_stats_add_up(filter_cfg, tmp_path):
    out = run_filter(filter_cfg)
    stats = json.loads((out / "stats.json").read_text())
    kept = list(Store(out, "kept").records())
    rejected = list(Store(out, "rejected").records())
    reasons = {(r["prompt_id"], r["sample_index"]): r["reject_reason"] for r in rejected}
    assert reasons == {
        ("p1", 1): "duplicate", ("p1", 2): "near_duplicate", ("p2", 0): "wrong_answer",
        ("p2", 1): "truncated", ("p2", 2): "unclosed_think", ("p2", 3): "empty_answer",
        ("p3", 0): "no_boxed_answer", ("p3", 1): "garbage", ("p3", 2): "unverifiable",
        ("p3", 3): "too_long", ("p3", 4): "too_short", ("p4", 0): "contaminated:bench",
        ("p5", 2): "not_selected"}  # shortest-2 of p5 keeps samples 0 and 1
    assert {(r["prompt_id"], r["sample_index"]) for r in kept} == {("p1", 0), ("p1", 3), ("p3", 5), ("p5", 0),
                                                                 ("p5", 1)}
    assert stats["kept"] + stats["rejected"] == stats["input_records"] == 18
    assert sum(stats["reject_reasons"].values()) == stats["rejected"]
    assert stats["contamination_hits"] == {"bench": 1}
    assert sum(stats["pass_rate_histogram"].values()) == stats["prompts"] == 5
    assert stats["per_prompt_pass_rate"]["p2"] == 0.0
    assert all(r["verdict"] == "correct" and r["messages"][-1]["role"] == "assistant" for r in kept)
    assert all(r["pass_rate"] is not None for r in kept + rejected)


def test_rerun_is_idempotent_and_other_config_refused(filter_cfg):
    out = run_filter(filter_cfg)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    run_filter(filter_cfg)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before
    other = filter_cfg.model_copy(deep=True)
    other.filter.keep_unverifiable = True
    with pytest.raises(SeqdistillError, match="refusing to overwrite"):
        run_filter(other)
    run_filter(other, overwrite=True)
    kept = {(r["prompt_id"], r["sample_index"]) for r in Store(out, "kept").records()}
    assert ("p3", 2) in kept


def test_pass_rate_band_and_keep_all(filter_cfg):
    cfg = filter_cfg.model_copy(deep=True)
    cfg.filter.select, cfg.filter.pass_rate_min, cfg.filter.pass_rate_max = "all", 0.5, 0.99
    cfg.filter.drop_contaminated = False
    out = run_filter(cfg)
    kept = list(Store(out, "kept").records())
    # p1 (4/4 correct), p4 and p5 (all correct) are outside the band; p3 has 3/6 correct
    assert {r["prompt_id"] for r in kept} == {"p3"}


def test_bad_input_errors(tmp_path):
    cfg = validate({"run_dir": str(tmp_path / "run")})
    with pytest.raises(DataError, match="not a generate output dir"):
        run_filter(cfg)
    write_generate_output(tmp_path / "run" / "generate", [rec("p", 0, ok(), gold=None)])
    with pytest.raises(DataError, match="no record has a gold answer"):
        run_filter(cfg)


def test_pass_rate_band_with_one_sample_per_prompt_is_refused(tmp_path):
    from seqdistill.errors import ConfigError

    write_generate_output(tmp_path / "run" / "generate", [rec("a", 0, ok()), rec("b", 0, ok(ans="1"))])
    cfg = validate({"run_dir": str(tmp_path / "run"), "filter": {"pass_rate_min": 0.2, "pass_rate_max": 0.8}})
    with pytest.raises(ConfigError, match="generate.sampling.n: 1"):
        run_filter(cfg)
    assert not (tmp_path / "run" / "filter").exists()
    with pytest.raises(ConfigError, match="filter: .*pass_rate_min 0.9 > pass_rate_max 0.1"):  # at load time
        validate({"run_dir": str(tmp_path / "run"), "filter": {"pass_rate_min": 0.9, "pass_rate_max": 0.1}})


def test_short_benchmark_items_are_caught_by_containment(tmp_path):
    from seqdistill.overlap import OverlapIndex

    index = OverlapIndex(["What is 7 times 8?", "Ava has twelve red apples and gives three of them away today."], 8)
    assert index.hits("Quick one. What is 7 times 8? Answer in a box.")  # 5 words < 8: containment
    assert not index.hits("What is 7 times 9?")
    assert index.hits("Ava has twelve red apples and gives three of them away now")  # shared 8-gram
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": "What is 7 times 8?", "answer": "56"}) + "\n")
    q = "Warm-up: what is 7 times 8? Put the result in a box."
    write_generate_output(tmp_path / "run" / "generate", [rec("a", 0, ok(), question=q), rec("b", 0, ok())])
    cfg = validate({"run_dir": str(tmp_path / "run"), "filter": {
        "num_workers": 1, "decontaminate": [{"path": str(bench), "name": "short"}]}})
    stats = json.loads((run_filter(cfg) / "stats.json").read_text())
    assert stats["contamination_hits"] == {"short": 1}


@pytest.mark.parametrize("drop", [False, True])
def test_invented_execution_output_is_counted_and_rejected_when_asked(tmp_path, drop):
    invented = ("<think>\nLet me compute it with code.\n```python\nprint(40 + 2)\n```\n```output\n42\n```\n"
                "So the total is 42.\n</think>\nThe total is \\boxed{42}.")
    recs = [rec("a", 0, ok()), rec("b", 0, invented), rec("c", 0, ok("no code here, and ``` fences without it"))]
    write_generate_output(tmp_path / "run" / "generate", recs)
    cfg = validate({"run_dir": str(tmp_path / "run"), "data": {"synthetic": {"n": 3}, "task": "arithmetic"},
                    "filter": {"num_workers": 1, "near_dup_threshold": None, "drop_invented_output": drop}})
    out = run_filter(cfg)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["invented_output"] == {"traces": 1, "kept": 0 if drop else 1}
    assert stats["reject_reasons"] == ({"invented_output": 1} if drop else {})
