"""Every shipped recipe validates against the schema, names prompt templates that exist, and opens with a
runbook comment; every accelerate launcher config parses."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from seqdistill.chat import load_template
from seqdistill.config import load_recipe
from seqdistill.verify import get_task

RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if "accelerate" not in p.parts)
LAUNCHERS = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))


def test_recipes_exist():
    names = {p.relative_to(REPO / "recipes").as_posix() for p in RECIPES}
    assert "demo/cpu.yaml" in names
    assert any(n.startswith("gsm8k/") for n in names) and any(n.startswith("math500/") for n in names)
    assert any(n.startswith("aime24/") for n in names) and len(LAUNCHERS) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(REPO / "recipes").as_posix())
def test_recipe_validates_and_reads_like_a_runbook(path: Path):
    cfg = load_recipe(path)
    load_template(cfg.prompt.template)
    for data in [cfg.data, *(cfg.filter.decontaminate), *([cfg.eval.data] if cfg.eval.data else [])]:
        get_task(data.task)
    assert (cfg.teacher is not None or cfg.teachers) and cfg.student is not None
    assert cfg.eval.data is not None, "eval needs a held-out set (issue 8)"
    if cfg.kd is not None and cfg.kd.tail == "bucket":
        assert cfg.kd.temperature == 1.0, "tail: bucket is refused at temperature != 1"
    lines = path.read_text().splitlines()
    head = lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert len(head) >= 5, "a recipe opens with its runbook comment"
    text = "\n".join(head).lower()
    for word in ("hardware", "command", "expected"):
        assert word in text, f"{path.name}: runbook comment should say {word}"


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.name)
def test_accelerate_launchers_parse(path):
    cfg = yaml.safe_load(path.read_text())
    assert cfg["distributed_type"] in {"MULTI_GPU", "DEEPSPEED", "FSDP"}
    assert cfg["num_processes"] >= 1 and cfg["mixed_precision"] in {"bf16", "fp16", "no"}
    if cfg["distributed_type"] == "DEEPSPEED":
        assert cfg["deepspeed_config"]["zero_stage"] in (2, 3)
