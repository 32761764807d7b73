"""The house: cli -> pipeline -> stages -> shared modules. No stage imports another stage; every schema field
says what it does, and `seqdistill recipe explain` shows it."""

import ast
from pathlib import Path

from conftest import schema_fields

PKG = Path(__file__).resolve().parent.parent / "seqdistill"
STAGES = {"generate", "filter", "sft", "kd", "evaluate"}
TOP = {"cli", "pipeline"}  # may import stages


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level >= 1 and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("seqdistill."):
            out.add(node.module.split(".")[1])
    return out


def test_no_stage_imports_another_stage_and_shared_modules_import_no_stage():
    bad = []
    for path in PKG.rglob("*.py"):
        name = path.stem
        if name in TOP:
            continue
        for mod in _imports(path) & STAGES:
            if mod != name:
                bad.append(f"{path.relative_to(PKG)} imports stage {mod}")
    assert bad == []


def test_every_schema_field_has_a_description_shown_by_recipe_explain():
    from typer.testing import CliRunner

    from seqdistill.cli import app
    from seqdistill.config import RecipeConfig

    fields = list(schema_fields(RecipeConfig))
    assert len(fields) > 150
    assert [p for p, f in fields if not f.description] == []
    runner = CliRunner()
    for path in ("generate.sampling.temperature", "kd.tail", "eval.max_train_overlap", "filter.decontaminate"):
        res = runner.invoke(app, ["recipe", "explain", path])
        desc = dict(fields)[path].description
        assert res.exit_code == 0 and path in res.output and desc in res.output
    res = runner.invoke(app, ["recipe", "explain", "generate.sampling"])
    assert all(f"generate.sampling.{k}" in res.output for k in ("n", "temperature", "top_p", "max_tokens"))
    res = runner.invoke(app, ["recipe", "explain", "generate.samplng"])
    assert res.exit_code == 2 and "no key 'samplng'" in res.output


def test_each_command_has_its_own_help():
    from typer.testing import CliRunner

    from seqdistill.cli import app

    runner = CliRunner()
    wants = {"generate": "--shard", "filter": "--input-dir", "sft": "--inspect", "kd": "--mode",
             "eval": "--model", "run": "--stages", "check": "--task", "shrink": "--layers"}
    for cmd, flag in wants.items():
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and flag in res.output, (cmd, res.output)
