"""Stage 4 (optional): token-level KL distillation, `kd.mode`:

- offline: from the teacher's top-K logprobs captured during `generate` (no teacher in memory). The training
  sequence is the exact token ids the teacher produced (prompt_ids + completion_ids), so every stored
  distribution lines up with the position it was computed at; no re-tokenisation drift.
- online: teacher loaded beside the student, full-vocabulary KL on the kept traces, chunked over the sequence
  (with recomputation) so full-vocabulary logits for the whole sequence never exist at once.
- on-policy: rounds through the engine (onpolicy.py): the student samples the kept prompts, the teacher scores
  exactly those tokens (top-K in one prefill pass), the offline trainer trains on them, the next round samples
  from the updated student.

All reuse sft's trainer plumbing: LoRA, resume, logging, saving, refusal to overwrite."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from .config import RecipeConfig
from .errors import ConfigError, DataError
from .kd_trainer import has_logprobs, load_kd_records, make_kd_trainer, offline_trainer
from .models import default_device, load_causal_lm, load_options, load_tokenizer, pick_dtype, resolve
from .train import student_source, train_stage

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ tokenizer compatibility
def check_vocab(teacher_tok, student_tok) -> None:
    """Teacher and student must map tokens to the same ids; padding rows beyond the vocab may differ."""
    tv, sv = teacher_tok.get_vocab(), student_tok.get_vocab()
    if tv == sv:
        return
    t_by_id = {i: t for t, i in tv.items()}
    s_by_id = {i: t for t, i in sv.items()}
    for i in sorted(set(t_by_id) | set(s_by_id)):
        if t_by_id.get(i) != s_by_id.get(i):
            raise ConfigError(
                f"teacher and student tokenizers differ: first at id {i}: teacher {t_by_id.get(i)!r} vs "
                f"student {s_by_id.get(i)!r} (vocab sizes {len(tv)} vs {len(sv)}); token-level KD needs a "
                "shared tokenizer: pick a same-family pair, or use sequence-level sft only")


def _load_teacher(cfg: RecipeConfig):

    teacher = cfg.need("teacher")
    path = resolve(teacher.path, teacher.gguf_file)
    model = load_causal_lm(path, dtype=pick_dtype(teacher.dtype, default_device()),
                                                 **load_options(teacher))
    for p in model.parameters():
        p.requires_grad_(False)
    return path, model


def teacher_path(cfg: RecipeConfig, records: list[dict], mode: str) -> str:
    if cfg.teacher is not None:
        return resolve(cfg.teacher.path, cfg.teacher.gguf_file)
    models = {r.get("model") for r in records}
    if mode == "offline" and len(models) == 1 and None not in models:
        return resolve(models.pop())  # the teacher that wrote the traces (generate records its path)
    raise ConfigError(f"teacher: required for kd.mode {mode} (its tokenizer is checked against the student's)")


def _resolve_mode(k, records: list[dict], source: str) -> str:
    mode = k.mode
    if mode == "auto":
        mode = "offline" if has_logprobs(records) else "online"
        log.info("kd: mode %s (%s)", mode, "dataset carries teacher logprobs" if mode == "offline"
                 else "no logprobs captured (set generate.logprobs: K for offline KD)")
    if mode == "offline" and not has_logprobs(records):
        raise DataError(f"kd.mode offline: {source} has records without teacher logprobs; generate with "
                        "generate.logprobs: K, or use kd.mode: online")
    return mode


def run_kd(cfg: RecipeConfig, resume: bool = False, overwrite: bool = False) -> Path:
    cfg.need("kd")
    cfg = cfg.model_copy(deep=True)  # init_from / mode are resolved below; the caller's config stays as given
    k = cfg.kd
    sft_model = cfg.stage_dir("sft") / "model"
    if k.init_from is None and (sft_model / "config.json").is_file():
        k.init_from = str(sft_model)  # KD refines the SFT student when there is one
        log.info("kd: starting from the sft student %s", sft_model)
    source = k.dataset or str(cfg.stage_dir("filter") / "kept")
    records = load_kd_records(source) if k.mode in ("auto", "offline") else []
    mode = k.mode = _resolve_mode(k, records, source)
    student = student_path, student_tok = student_source(cfg, k)
    # every mode: the teacher's token ids must mean the same words to the student (offline included:
    # its stored ids and top-K rows are teacher ids)
    check_vocab(load_tokenizer(teacher_path(cfg, records, mode), **load_options(cfg.teacher)), student_tok)
    for key in ("temperature", "teacher_temperature"):
        if mode == "offline" and k.tail == "bucket" and getattr(k, key) != 1.0:
            raise ConfigError(f"kd.tail: bucket with kd.{key}: {getattr(k, key)} is refused: the teacher's tail "
                              f"mass cannot be tempered exactly from stored top-K logprobs; set kd.{key}: 1.0 "
                              "or kd.tail: renorm")
    if mode == "on-policy":
        from .onpolicy import run_onpolicy

        return run_onpolicy(cfg, student_path, Path(source), overwrite)
    common = dict(student=student, remove_unused_columns=False)
    if mode == "offline":
        trainer_cls, ds, extra = offline_trainer(cfg, records, student_path, student_tok)
        common.update(train_dataset=ds, **extra)
    else:  # online: the teacher in memory, full-vocabulary KL on the kept traces
        trainer_cls = functools.partial(make_kd_trainer(), kd=k, teacher=_load_teacher(cfg)[1])
    return train_stage(cfg, "kd", k, Path(source), resume, overwrite, ("teacher",), trainer_cls=trainer_cls,
                       **common)
