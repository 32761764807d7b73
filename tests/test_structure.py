"""The house: cli -> pipeline -> stages -> shared modules. No stage imports another stage; every schema field
says what it does, and `seqdistill recipe explain` shows it."""

import ast
from pathlib import Path

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
