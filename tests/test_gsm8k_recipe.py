"""The shipped GSM8K CPU recipe at tiny size (slow): the real packaged pair, the shipped data slice, every
stage the recipe names, so the recipe cannot rot. The hf backend stands in for vLLM (not in the main env);
the budget is too short for correct answers, so the filter keeps traces whatever their verdict."""

import json

import pytest
from conftest import REPO

from seqdistill.config import load_recipe
from seqdistill.data import load_prompts
from seqdistill.pipeline import run_pipeline

pytestmark = pytest.mark.slow
RECIPE = REPO / "recipes" / "gsm8k" / "cpu-qwen1.5b-to-0.5b.yaml"


def test_shipped_slice_is_the_documented_one(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_recipe(RECIPE)
    train = load_prompts(cfg.data.model_copy(update={"limit": None}))
    test = load_prompts(cfg.eval.data.model_copy(update={"limit": None}), "eval.data")
    assert (len(train), len(test)) == (500, 250)
    assert all(it["answer"].rsplit("####", 1)[1].strip() for it in train + test)
    assert not {it["question"] for it in train} & {it["question"] for it in test}
    assert (REPO / "recipes" / "gsm8k" / "data" / "LICENSE").read_text().startswith("MIT License")


def test_gsm8k_recipe_runs_end_to_end_tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipe's data paths are relative to the repository root
    cfg = load_recipe(RECIPE, [
        f"run_dir={tmp_path / 'gsm8k'}", "generate.backend=hf", "eval.backend=hf", "data.limit=3",
        "generate.batch_size=6", "generate.sampling.max_tokens=40", "filter.require_correct=false",
        "filter.drop_truncated=false", "filter.require_boxed=false", "filter.near_dup_threshold=null",
        "sft.max_steps=1", "sft.save_steps=100", "eval.data.limit=2", "eval.batch_size=2",
        "eval.sampling.max_tokens=24", "eval.models=[teacher, sft]"])
    run_pipeline(cfg)
    stats = json.loads((tmp_path / "gsm8k" / "filter" / "stats.json").read_text())
    assert stats["input_records"] == 6 and stats["kept"] >= 1
    report = json.loads((tmp_path / "gsm8k" / "eval" / "eval.json").read_text())
    assert set(report["models"]) == {"teacher", "sft"}
    assert report["models"]["sft"]["problems"] == 2 and report["train_overlap"]["overlapping"] == 0
