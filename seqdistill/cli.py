"""`seqdistill` command line. Each command only builds the config (recipe + flags + --set) and calls
the plain `run_<stage>(config)` function that tests call too."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from .config import RecipeConfig, load_recipe
from .errors import SeqdistillError, disk_error

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sequence-level LLM distillation: generate -> filter -> sft -> (kd) -> eval.")

RecipeOpt = typer.Option(None, "--recipe", "-r", help="recipe YAML (keys = config field names)")
SetOpt = typer.Option(None, "--set", "-s", help="override a key: --set generate.sampling.n=4 (repeatable)")
OutOpt = typer.Option(None, "--output-dir", "-o", help="this stage's output dir (default: RUN_DIR/<stage>)")
OverwriteOpt = typer.Option(False, "--overwrite", help="replace an output dir written with another config")
VerboseOpt = typer.Option(False, "--verbose", "-v")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def _config(recipe: Optional[Path], sets: Optional[list[str]], flags: dict) -> RecipeConfig:
    # real flags are just named overrides: same dict, same validation, same error messages
    cfg = load_recipe(recipe, list(sets or []), flags)
    if recipe is not None:
        from .hardware import expected_time

        line = expected_time(Path(recipe).read_text(errors="replace"))
        if line:
            logging.getLogger("seqdistill").info("%s", line)
    return cfg


def _show_report(path: Path) -> None:
    """The CLI prints stage summaries; library code only logs."""
    if path.name == "stats.json" and path.is_file():
        import json

        from .report import filter_summary

        typer.echo(filter_summary(json.loads(path.read_text())))
    elif path.is_file():
        typer.echo(path.read_text())


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except SeqdistillError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        err = disk_error(exc)
        if err is None:
            raise
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


@app.command()
def generate(recipe: Optional[Path] = RecipeOpt, set_: Optional[list[str]] = SetOpt,
             output_dir: Optional[str] = OutOpt, overwrite: bool = OverwriteOpt,
             backend: Optional[str] = typer.Option(None, help="hf | vllm | openai"),
             shard: Optional[str] = typer.Option(None, help="i/N: this process's slice of the prompts"),
             limit: Optional[int] = typer.Option(None, help="first N prompts only"),
             n: Optional[int] = typer.Option(None, help="samples per prompt"),
             verbose: bool = VerboseOpt):
    """Teacher writes n reasoning traces per prompt (resumable, sharded)."""
    _setup_logging(verbose)
    from .generate import run_generate

    cfg = _run(_config, recipe, set_, {"generate.output_dir": output_dir, "generate.backend": backend,
                                       "generate.shard": shard, "data.limit": limit, "generate.sampling.n": n})
    out = _run(run_generate, cfg, overwrite=overwrite)
    typer.echo(f"generate output: {out}")


@app.command("filter")
def filter_(recipe: Optional[Path] = RecipeOpt, set_: Optional[list[str]] = SetOpt,
            input_dir: Optional[str] = typer.Option(None, help="a generate output dir"),
            output_dir: Optional[str] = OutOpt, overwrite: bool = OverwriteOpt, verbose: bool = VerboseOpt):
    """Keep verified-correct, well-formed, uncontaminated traces."""
    _setup_logging(verbose)
    from .filter import run_filter

    cfg = _run(_config, recipe, set_, {"filter.input_dir": input_dir, "filter.output_dir": output_dir})
    out = _run(run_filter, cfg, overwrite=overwrite)
    _show_report(out / "stats.json")
    typer.echo(f"filter output: {out}")


@app.command()
def sft(recipe: Optional[Path] = RecipeOpt, set_: Optional[list[str]] = SetOpt,
        dataset: Optional[str] = typer.Option(None, help="kept/ dir or any dataset with messages"),
        output_dir: Optional[str] = OutOpt, overwrite: bool = OverwriteOpt,
        resume: bool = typer.Option(False, "--resume", help="continue from the last checkpoint"),
        inspect: bool = typer.Option(False, "--inspect", help="show the label mask; train nothing"),
        inspect_n: int = typer.Option(2, help="examples to show with --inspect"),
        verbose: bool = VerboseOpt):
    """Supervised fine-tuning of the student on the kept traces (TRL SFTTrainer)."""
    _setup_logging(verbose)
    from .sft import inspect_sft, run_sft

    cfg = _run(_config, recipe, set_, {"sft.dataset": dataset, "sft.output_dir": output_dir})
    if inspect:
        typer.echo(_run(inspect_sft, cfg, n=inspect_n))
        return
    out = _run(run_sft, cfg, resume=resume, overwrite=overwrite)
    typer.echo(f"sft output: {out}")


@app.command()
def kd(recipe: Optional[Path] = RecipeOpt, set_: Optional[list[str]] = SetOpt,
       mode: Optional[str] = typer.Option(None, help="auto | offline | online | on-policy"),
       output_dir: Optional[str] = OutOpt, overwrite: bool = OverwriteOpt,
       resume: bool = typer.Option(False, "--resume"), verbose: bool = VerboseOpt):
    """Token-level KL distillation (offline from captured logprobs, online, or on-policy)."""
    _setup_logging(verbose)
    from .kd import run_kd

    cfg = _run(_config, recipe, set_, {"kd.mode": mode, "kd.output_dir": output_dir})
    out = _run(run_kd, cfg, resume=resume, overwrite=overwrite)
    typer.echo(f"kd output: {out}")


@app.command("eval")
def eval_(recipe: Optional[Path] = RecipeOpt, set_: Optional[list[str]] = SetOpt,
          output_dir: Optional[str] = OutOpt, overwrite: bool = OverwriteOpt,
          model: Optional[list[str]] = typer.Option(None, "--model", "-m",
                                                   help="teacher | student | sft | kd | final | a path"),
          verbose: bool = VerboseOpt):
    """Accuracy (pass@1, pass@k, maj@k with CIs), retention, size and speed of teacher vs student."""
    _setup_logging(verbose)
    from .evaluate import run_eval

    flags = {"eval.output_dir": output_dir}
    if model:
        flags["eval.models"] = list(model)
    cfg = _run(_config, recipe, set_, flags)
    out = _run(run_eval, cfg, overwrite=overwrite)
    _show_report(out / "report.md")
    typer.echo(f"eval output: {out}")


@app.command()
def run(recipe: Path = typer.Argument(..., help="recipe YAML"), set_: Optional[list[str]] = SetOpt,
        stages: Optional[str] = typer.Option(None, help="comma list, e.g. filter,sft"),
        overwrite: bool = OverwriteOpt, verbose: bool = VerboseOpt):
    """Run generate -> filter -> sft -> (kd) -> eval, skipping finished stages and resuming the rest."""
    _setup_logging(verbose)
    from .pipeline import run_pipeline

    cfg = _run(_config, recipe, set_, {})
    todo = _run(run_pipeline, cfg, stages=stages.split(",") if stages else None, overwrite=overwrite)
    if "filter" in todo:
        _show_report(cfg.stage_dir("filter") / "stats.json")
    if "eval" in todo:
        _show_report(cfg.stage_dir("eval") / "report.md")
        png = cfg.stage_dir("eval") / "report.png"
        if png.is_file():
            typer.echo(f"plot: {png}")
    page = Path(cfg.run_dir) / "report.html"
    if page.is_file():
        typer.echo(f"report: {page} (open it in a browser)")


@app.command("push")
def push_cmd(folder: Path = typer.Argument(..., help="a finished generate/filter output or a saved model folder"),
             repo: str = typer.Option(..., "--repo", help="Hub repo id, OWNER/NAME"),
             private: bool = typer.Option(False, "--private", help="create the repo as private"),
             verbose: bool = VerboseOpt):
    """Upload a dataset (with its card) or a model folder to the Hugging Face Hub (huggingface_hub)."""
    _setup_logging(verbose)
    from .cards import push

    typer.echo(f"pushed: {_run(push, folder, repo, private)}")


@app.command("report")
def report(run_dir: Path = typer.Argument(..., help="a run dir (RUN_DIR of a recipe)"),
           out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default: RUN_DIR/report.html)"),
           verbose: bool = VerboseOpt):
    """One self-contained HTML page of a run: stages, filter funnel, lengths, eval, trace browser."""
    _setup_logging(verbose)
    from .report import write_report

    typer.echo(f"report: {_run(write_report, run_dir, out)}")


recipe_app = typer.Typer(help="The recipe schema: every key, its default and what it does.")
app.add_typer(recipe_app, name="recipe")


@recipe_app.command("explain")
def recipe_explain(key: str = typer.Argument("", help="a dotted key or section, e.g. generate.sampling")):
    """Print a key's type, default and description, or a section's keys."""
    from .config import explain

    typer.echo(_run(explain, key))


@app.command()
def check(output: str = typer.Argument(..., help="the model's output text (or @FILE to read it from a file)"),
          gold: str = typer.Argument(..., help="the gold answer, the dataset's answer field or test code (or @FILE)"),
          task: str = typer.Option("math", help="a task name (data.task: `seqdistill recipe explain data.task`); "
                                   "code: GOLD is test code"),
          timeout: float = typer.Option(5.0, help="seconds math-verify may take")):
    """Show how the verifier reads one output: extracted answer, normalised forms, path and verdict. With
    --task code the output's last Python block runs with GOLD (test code) in the sandbox."""
    from .verify import TASKS, explain

    if task not in TASKS:
        typer.secho(f"error: --task: unknown task {task!r}; choose one of {sorted(TASKS)}", fg="red", err=True)
        raise typer.Exit(2)
    if output.startswith("@"):
        output = _run(_read_text, output[1:])
    if gold.startswith("@"):
        gold = _run(_read_text, gold[1:], "gold")
    got = _run(explain, output, gold, task, timeout)
    for key, value in got.items():
        typer.echo(f"{key:<16} {value}")


def _read_text(path: str, what: str = "output") -> str:
    from .errors import DataError

    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the {what} text ({exc.__class__.__name__})") from None


@app.command()
def shrink(teacher: str = typer.Option(..., help="model folder (or packaged:<name>)"),
           layers: str = typer.Option(..., help="'0,2,4' or 'every:2'"),
           out: Path = typer.Option(..., "--out"), overwrite: bool = OverwriteOpt, verbose: bool = VerboseOpt):
    """Build a smaller student from a teacher's embeddings, chosen layers and head (DistilBERT-style)."""
    _setup_logging(verbose)
    from .shrink import shrink_model

    path = _run(shrink_model, teacher, layers, out, overwrite=overwrite)
    typer.echo(f"student: {path}")


@app.command()
def merge(adapter: Path = typer.Argument(..., help="a LoRA adapter folder (e.g. a committed adapter-bf16/)"),
          base: str = typer.Option(..., help="the base model it was trained on (folder or packaged:<name>)"),
          out: Path = typer.Option(..., "--out", help="the merged model folder to write"),
          dtype: str = typer.Option("bfloat16", help="bfloat16 | float32 | float16"),
          overwrite: bool = OverwriteOpt, verbose: bool = VerboseOpt):
    """Merge a LoRA adapter into its base model: a folder generate, eval and vLLM can load."""
    _setup_logging(verbose)
    from .adapters import merge_adapter
    from .errors import ConfigError
    from .models import resolve

    if dtype not in ("bfloat16", "float32", "float16"):
        _run(lambda: (_ for _ in ()).throw(ConfigError(f"--dtype: {dtype!r}; choose bfloat16, float32 or float16")))
    path = _run(lambda: merge_adapter(adapter, resolve(base), out, dtype, overwrite=overwrite))
    typer.echo(f"merged model: {path}")


def main() -> None:  # pragma: no cover
    app(prog_name="seqdistill")


if __name__ == "__main__":  # vLLM spawns workers: entry points need the guard
    sys.exit(main())
