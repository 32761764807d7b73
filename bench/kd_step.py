"""Offline KD on CPU: one row per sequence (padded micro-batches) vs sequences packed into max_length rows
(kd.packing), on the recipe's real student, LoRA, compile setting and kept traces with their top-K logprobs,
measured in one run. Both variants train on the same first N sequences through the trainer `seqdistill kd`
builds (`kd.offline_trainer`), forward + backward per micro-batch; each variant's first pass over the data is
a warm-up (compilation for new shapes, oneDNN caches), the second is timed. Prints tokens/s (real tokens, no
padding), the ratio, and each as a share of the bf16 matmul bound (bench/matmul_peak.py; ~4 x params FLOPs a
token for LoRA, as bench/sft_step.py). Run with nothing else on the machine:

    python bench/kd_step.py -r recipes/gsm8k/cpu-scaled-1.5b-to-0.5b.yaml --set run_dir=$HOME/runs/gsm8k-scaled \
        [--sequences 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_peak import tflops  # noqa: E402

from seqdistill.config import load_recipe  # noqa: E402
from seqdistill.kd_trainer import load_kd_records, offline_trainer  # noqa: E402
from seqdistill.models import count_params  # noqa: E402
from seqdistill.train import build_trainer, load_inputs, student_source  # noqa: E402


def run_variant(cfg, records, packing: bool) -> dict:
    torch.manual_seed(0)
    cfg = cfg.model_copy(deep=True)
    cfg.kd.packing, cfg.kd.mode = packing, "offline"
    source = student_source(cfg, cfg.kd)
    trainer_cls, ds, extra = offline_trainer(cfg, records, *source)
    inputs = load_inputs(cfg, cfg.kd, "kd", Path("unused"), ds, source)
    trainer, _, _ = build_trainer(cfg, cfg.kd, "kd", Path(tempfile.mkdtemp()), Path("unused"),
                                  trainer_cls=trainer_cls, inputs=inputs, remove_unused_columns=False, **extra)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    model = trainer.model
    model.train()
    collate = trainer.data_collator
    rows = [ds[i] for i in range(len(ds))]
    batches = [collate([r]) for r in rows]  # one row per micro-batch, as on CPU
    tokens = sum(len(r["input_ids"]) for r in rows)
    items = torch.tensor(sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches))
    times = []
    for rep in range(2):
        t0 = time.perf_counter()
        for b in batches:
            trainer.training_step(model, dict(b), items)
        times.append(time.perf_counter() - t0)
        print(f"  packing={packing} pass {rep} ({'warm-up' if rep == 0 else 'timed'}): {len(batches)} micro-batches, "
              f"{tokens} tokens in {times[-1]:.1f} s ({tokens / times[-1]:.1f} tok/s)", flush=True)
    return {"rows": len(rows), "tokens": tokens, "seconds": times[1], "tokens_per_s": tokens / times[1],
            "warmup_s": times[0], "params": count_params(source[0])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--recipe", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--sequences", type=int, default=16, help="first N kept traces (the same N for both variants)")
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = load_recipe(args.recipe, args.set)
    torch.set_num_threads(cfg.num_threads or torch.get_num_threads())
    records = load_kd_records(cfg.kd.dataset or str(cfg.stage_dir("filter") / "kept"))[:args.sequences]
    res = {"unpacked": run_variant(cfg, records, False), "packed": run_variant(cfg, records, True)}
    u, p = res["unpacked"], res["packed"]
    peak = max(tflops(n, torch.bfloat16, 1.0) for n in (1024, 2048))
    bound = peak * 1e12 / (4 * u["params"])
    res["peak_bf16_tflops"], res["lora_bound_tokens_per_s"] = peak, bound
    print(f"bf16 matmul peak here now: {peak:.2f} TFLOP/s; LoRA bound ~4 x {u['params'] / 1e6:.0f}M params "
          f"FLOPs/token = {bound:.0f} tokens/s: unpacked {u['tokens_per_s'] / bound:.1%}, packed "
          f"{p['tokens_per_s'] / bound:.1%} of it")
    print(f"offline KD, {len(records)} sequences, {u['tokens']} tokens, compile {cfg.kd.compile}: unpacked "
          f"{u['rows']} rows {u['tokens_per_s']:.1f} tok/s; packed {p['rows']} rows of <= {cfg.kd.max_length} "
          f"{p['tokens_per_s']:.1f} tok/s: {p['tokens_per_s'] / u['tokens_per_s']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
