"""Stage 3: supervised fine-tuning of the student on the kept traces, a thin wrapper over TRL's SFTTrainer.

What the wrapper adds (in `train.py`, shared with kd) is the checks users keep getting wrong: loss on assistant
tokens only (or a clear error), reasoning kept in the rendered text, the end-of-turn token as EOS, a label-mask
preview (`--inspect`), resume, and no silent overwrite."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .config import RecipeConfig
from .records import FILTER_SCHEMA
from .store import Store, atomic_write_parquet
from .train import build_trainer, train_stage

log = logging.getLogger(__name__)


def run_sft(cfg: RecipeConfig, resume: bool = False, overwrite: bool = False) -> Path:
    kept = cfg.stage_dir("filter") / "kept"
    final = train_stage(cfg, "sft", cfg.sft, kept, resume, overwrite, ())
    if cfg.sft.per_teacher:
        for name in per_teacher_datasets(cfg, kept):
            one = cfg.model_copy(deep=True)
            one.sft.output_dir = str(cfg.per_teacher_dir(name))
            one.sft.dataset = str(_subset_dir(cfg, name))
            log.info("sft: student on %s's traces only -> %s", name, one.sft.output_dir)
            train_stage(one, "sft", one.sft, kept, resume, overwrite, ())
    return final


def _subset_dir(cfg: RecipeConfig, name: str) -> Path:
    return Path(cfg.run_dir) / "sft-by-teacher-data" / name


def per_teacher_datasets(cfg: RecipeConfig, kept: Path) -> list[str]:
    """Split the kept traces by teacher into RUN_DIR/sft-by-teacher-data/NAME (rewritten only on change)."""
    records = list(Store(kept.parent, kept.name).records())
    names = sorted({r["teacher"] for r in records})
    for name in [t.name for t in cfg.teachers]:
        if name not in names:
            log.warning("sft.per_teacher: teacher %s has no kept trace; no student for it", name)
    for name in names:
        path = _subset_dir(cfg, name) / "part-00000.parquet"
        table = pa.Table.from_pylist([r for r in records if r["teacher"] == name], schema=FILTER_SCHEMA)
        if not path.is_file() or not pq.read_table(path).equals(table):
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_parquet(path, table)
    return names


# ------------------------------------------------------------------ --inspect
def inspect_sft(cfg: RecipeConfig, n: int = 2, color: bool | None = None) -> str:
    """Render examples through the trainer's own tokenization and collation; trained tokens «like this»."""
    import tempfile

    section = cfg.sft
    with tempfile.TemporaryDirectory() as tmp:
        trainer, tok, _ = build_trainer(cfg, section, "sft", Path(tmp), cfg.stage_dir("filter") / "kept")
    ds = trainer.train_dataset
    collator = trainer.data_collator
    color = os.isatty(1) if color is None else color
    on, off = ("\x1b[1;32m", "\x1b[0m") if color else ("«", "»")
    lines, real = [], 0
    for row in ds:
        real += len(row["input_ids"])
    for idx in range(min(n, len(ds))):
        batch = collator([ds[idx]])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        pos = batch.get("position_ids")
        resets = int((pos[0] == 0).sum()) if pos is not None else 1
        text, inside = [], False
        for i, lab in zip(ids, labels):
            piece = tok.decode([i])
            if (lab != -100) != inside:
                text.append(on if not inside else off)
                inside = not inside
            text.append(piece)
        if inside:
            text.append(off)
        n_tr = sum(lab != -100 for lab in labels)
        lines.append(f"--- row {idx}: {len(ids)} tokens, {n_tr} trained, {len(ids) - n_tr} masked, "
                     f"{resets} sequence(s) packed")
        lines.append("".join(text))
    rows = len(ds)
    eff = real / (rows * section.max_length) if section.packing and rows else None
    lines.append(f"=== {rows} training rows, {real} tokens"
                 + (f", packing efficiency {eff:.1%} of {section.max_length}-token rows" if eff else ""))
    return "\n".join(lines)
