"""The house: cli -> pipeline -> stages -> shared modules. No stage imports another stage; every schema field
says what it does, and `seqdistill recipe explain` shows it."""

import ast
from pathlib import Path

import pytest
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


def _module_graph() -> dict[str, set[str]]:
    """seqdistill module -> the seqdistill modules it imports, at the top or inside a function (a deferred import
    is still a dependency: it only hides the cycle from Python's import machinery)."""
    mods = {p.relative_to(PKG).with_suffix("").as_posix().replace("/", "."): p for p in PKG.rglob("*.py")}
    mods = {m.removesuffix(".__init__"): p for m, p in mods.items()}
    graph = {}
    for mod, path in mods.items():
        pkg = mod.split(".")[:-1] if not path.name == "__init__.py" else mod.split(".")
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[:len(pkg) - node.level + 1] if node.level > 1 else pkg
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = (node.module or "").removeprefix("seqdistill.") if (node.module or "").startswith(
                        "seqdistill") else None
                if target is None:
                    continue
                names = [target] + [f"{target}.{a.name}" for a in node.names]
                deps.update(n for n in names if n in mods)
            elif isinstance(node, ast.Import):
                deps.update(a.name.removeprefix("seqdistill.") for a in node.names
                            if a.name.removeprefix("seqdistill.") in mods)
        graph[mod] = deps - {mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules():
    assert _cycles(_module_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _module_graph()
    assert "config" in graph["sampling"] and "store" in graph["train"]  # relative imports are read


def test_a_ray_replica_refuses_an_over_long_prompt_as_the_local_loop_does(tiny):
    """Ray replicas build prompts through the same function as the local loop (sampling.engine_prompts): a prompt
    longer than the model's context is refused naming it, not sent to the engine."""
    from seqdistill.backends import Params
    from seqdistill.config import PromptConfig
    from seqdistill.distributed import Replica
    from seqdistill.errors import DataError

    rep = Replica("hf", {"path": str(tiny["student"]), "dtype": "float32"}, {}, {}, 0, PromptConfig().model_dump(), 1)
    items = [{"id": "long", "question": "apples " * 3000, "answer": "1"}]
    with pytest.raises(DataError, match="prompt 'long': .* tokens, the model's context is 1024"):
        rep.run(items, Params(max_tokens=4), "arithmetic", "m")
    records, _ = rep.run([{"id": "ok", "question": "What is 2+2?", "answer": "4"}], Params(max_tokens=4),
                         "arithmetic", "m")
    assert [r["prompt_id"] for r in records] == ["ok"] and records[0]["completion_tokens"] <= 4
