"""The shipped CPU demo recipe end to end with real packaged models, sizes turned down (slow)."""

import json

import pytest
from conftest import REPO

from seqdistill.config import load_recipe
from seqdistill.pipeline import run_pipeline

pytestmark = pytest.mark.slow


def test_demo_recipe_runs_end_to_end_small(tmp_path):
    cfg = load_recipe(REPO / "recipes" / "demo" / "cpu.yaml", [
        f"run_dir={tmp_path / 'demo'}", "data.synthetic.n=6", "eval.data.synthetic.n=3",
        "generate.batch_size=6", "generate.sampling.max_tokens=128", "generate.sampling.temperature=0.0",
        "eval.sampling.max_tokens=64",
        "eval.batch_size=3", "sft.max_steps=2", "kd.max_steps=1", "sft.save_steps=100", "kd.save_steps=100",
        "eval.models=[teacher, student, kd]"])
    run_pipeline(cfg)
    report = json.loads((tmp_path / "demo" / "eval" / "eval.json").read_text())
    assert set(report["models"]) == {"teacher", "student", "kd"}
    t = report["models"]["teacher"]
    assert t["problems"] == 3 and 1.2e9 < t["params"] < 2.0e9  # the real 1.5B teacher (tied embeddings)
    assert 0.3e9 < report["models"]["kd"]["params"] < 0.7e9
    s = report["summary"]["kd"]
    assert 0.2 < s["size_ratio"] < 0.45 and s["speedup"] > 1.0
    kept = json.loads((tmp_path / "demo" / "filter" / "stats.json").read_text())["kept"]
    assert kept >= 1  # the real teacher solves some of the problems
