"""Dataset cards (README.md in the Hugging Face dataset-card format) for generate and filter outputs, and
`seqdistill push`, which uploads a dataset or model folder with huggingface_hub.

The card's YAML header is what the Hub and `datasets.load_dataset(DIR)` read: license, size, and `configs`
naming the Parquet shards; the body says how the data was made, from the recipe and the stage's own stats."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from .chat import load_template
from .config import RecipeConfig
from .errors import ConfigError, DataError, SeqdistillError
from .store import atomic_write_text

log = logging.getLogger(__name__)

_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M")]
FIELDS = """| field | what |
|---|---|
| `messages` | the chat as TRL reads it: system (if any), user prompt, assistant trace |
| `question`, `gold` | the prompt set's question and gold answer |
| `completion`, `reasoning`, `answer` | the teacher's output, split at `</think>` when there is one |
| `finish_reason`, `completion_tokens` | `length` when `max_tokens` cut the trace off |
| `teacher_topk_ids`, `teacher_topk_logprobs`, `logprobs_k` | the teacher's top-K logprobs (offline KD), raw bytes |
| `model`, `backend`, `teacher` | which teacher wrote the trace (its path and, with `teachers:`, its name), and how |"""
FILTER_FIELDS = """| `verdict`, `pred`, `verify_reason`, `verify_detail` | the verdict, the extracted answer and how |
| `pass_rate` | share of the prompt's samples that were correct |
| `reject_reason` | why a trace was rejected (rejected/ only) |"""


def size_category(n: int) -> str:
    return next((label for limit, label in _SIZES if n < limit), "n>10M")


def _header(cfg: RecipeConfig, rows: int, configs: list[dict], name: str) -> str:
    meta = {"license": cfg.dataset_license, "pretty_name": name, "task_categories": ["text-generation"],
            "tags": ["seqdistill", "distillation", "reasoning", "synthetic"], "size_categories": [size_category(rows)],
            "configs": configs}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _how_made(cfg: RecipeConfig) -> str:
    g, p = cfg.generate, cfg.prompt
    template = load_template(p.template)
    teachers = [f"- teacher `{name}`: `{m.path}` via the `{kind}` backend, sampling "
                f"`{json.dumps(s.model_dump(), sort_keys=True)}`" for name, m, kind, s in _specs(cfg)]
    lines = ["## How it was made", "",
             f"Made with seqdistill `generate` from the prompt set `{cfg.data.label()}` "
             f"(answer conventions: `{cfg.data.task}`).", "",
             *teachers,
             f"- top-K logprobs captured: {g.logprobs or 'no'}",
             f"- system prompt: {json.dumps(p.system) if p.system else 'none'}; assistant prefill: "
             f"{json.dumps(p.prefill) if p.prefill else 'none'}",
             "- prompt template (`{question}` is replaced by the question):", "", "```text", template.rstrip(), "```",
             "", f"License: `{cfg.dataset_license}` (recipe key `dataset_license`). The traces are model outputs: "
             "the teacher's terms of use apply as well as the prompt data's license."]
    return "\n".join(lines)


def _specs(cfg: RecipeConfig) -> list:
    try:
        return cfg.teacher_specs()
    except ConfigError:  # filter run on a generate dir made elsewhere (filter.input_dir), no teacher in the recipe
        return []


def write_generate_card(out: Path, cfg: RecipeConfig, records: int, prompts: int) -> Path:
    name = f"seqdistill traces: {cfg.data.label()}"
    body = [f"# {name}", "", f"{records} teacher traces for {prompts} prompts, unfiltered (see `filter` for the "
            "verified ones).", "", _how_made(cfg), "", "## Fields", "", FIELDS]
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}]
    return _write(out, _header(cfg, records, configs, name) + "\n".join(body) + "\n")


def write_filter_card(out: Path, cfg: RecipeConfig, stats: dict) -> Path:
    f = cfg.filter
    name = f"seqdistill verified traces: {cfg.data.label()}"
    reasons = "\n".join(f"| {r} | {n} |" for r, n in sorted(stats["reject_reasons"].items(), key=lambda kv: -kv[1]))
    body = [f"# {name}", "",
            f"{stats['kept']} verified traces kept of {stats['input_records']} generated, covering "
            f"{stats['prompts_with_kept']} of {stats['prompts']} prompts. The `rejected` config holds the rest "
            "with the reason.", "", _how_made(cfg), "", "## Filter", "",
            "- settings: `" + json.dumps(f.model_dump(exclude={"decontaminate", "input_dir", "output_dir"}),
                                         sort_keys=True) + "`",
            f"- decontaminated against: {', '.join(d.label() for d in f.decontaminate) or 'nothing'}"
            f" ({f.decontam_ngram}-grams); contamination hits: {json.dumps(stats.get('contamination_hits', {}))}",
            f"- mean output tokens: kept {stats['mean_tokens_kept'] or 0:.0f}, rejected "
            f"{stats['mean_tokens_rejected'] or 0:.0f}", "", "| rejected because | traces |", "|---|---|",
            reasons or "| (none) | 0 |", "", "## Fields", "", FIELDS, FILTER_FIELDS]
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": "kept/*.parquet"}]}]
    if stats["rejected"]:
        configs.append({"config_name": "rejected", "data_files": [{"split": "train", "path": "rejected/*.parquet"}]})
    return _write(out, _header(cfg, stats["kept"], configs, name) + "\n".join(body) + "\n")


def _write(out: Path, text: str) -> Path:
    path = out / "README.md"
    atomic_write_text(path, text)
    log.info("dataset card: %s", path)
    return path


# ----------------------------------------------------------------- push
IGNORE = [".tmp-*", "**/.tmp-*", "*.lock", "checkpoints/**", "quarantine/**", "**/quarantine/**"]


def push_plan(folder: Path, repo: str, private: bool = False) -> dict:
    """What `push` uploads and where: a model folder (config.json + weights) or a finished dataset folder
    (manifest.json complete, with its card). Refuses anything else before touching the network."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    if "/" not in repo or repo.count("/") != 1 or not all(repo.split("/")):
        raise ConfigError(f"--repo {repo!r}: expected OWNER/NAME")
    if (folder / "config.json").is_file():
        if not any(next(folder.glob(p), None) for p in ("*.safetensors", "*.bin")):
            raise DataError(f"{folder}: has config.json but no weights; push a saved model folder")
        kind = "model"
    elif (folder / "manifest.json").is_file():
        m = json.loads((folder / "manifest.json").read_text())
        if not m.get("complete"):
            raise DataError(f"{folder}: the stage has not finished (manifest complete: false); finish it first")
        if not (folder / "README.md").is_file():
            raise DataError(f"{folder}: no dataset card (README.md); rerun the stage to write it")
        kind = "dataset"
    else:
        raise DataError(f"{folder}: neither a model folder (config.json) nor a seqdistill dataset (manifest.json)")
    return {"repo_id": repo, "repo_type": kind, "private": private, "folder_path": str(folder),
            "ignore_patterns": IGNORE}


def push(folder: str | Path, repo: str, private: bool = False, api=None) -> str:
    plan = push_plan(Path(folder), repo, private)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.create_repo(plan["repo_id"], repo_type=plan["repo_type"], private=plan["private"], exist_ok=True)
        info = api.upload_folder(repo_id=plan["repo_id"], repo_type=plan["repo_type"],
                                 folder_path=plan["folder_path"], ignore_patterns=plan["ignore_patterns"],
                                 commit_message=f"seqdistill push of {Path(folder).name}")
    except Exception as exc:  # no network, no token, no rights: one line, not huggingface_hub's traceback
        first = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SeqdistillError(f"push {plan['repo_id']}: the Hub refused or could not be reached "
                              f"({type(exc).__name__}: {first}); check the network and `hf auth login`") from None
    return str(getattr(info, "commit_url", info))
