"""Offline KD against SFT on CPU, on the same rows: the recipe's real student, LoRA, compile setting and kept
traces with their top-K logprobs, forward + backward per micro-batch (one row each, as on CPU), measured in one
run. Variants (run_variant): sft, kd (the fused loss `seqdistill kd` trains with), kd-reference (the same loss
through the unfused reference path), kd-packed. Each variant's first pass over the rows is a warm-up
(compilation for new shapes, oneDNN caches), the second is timed. Prints tokens/s (real tokens, no padding),
each variant's ratio to sft, and its share of the bf16 matmul bound (bench/matmul_peak.py; ~4 x params FLOPs a
token for LoRA, as bench/sft_step.py). Run with nothing else on the machine:

    python bench/kd_step.py -r recipes/gsm8k/cpu-scaled-1.5b-to-0.5b.yaml --set run_dir=$HOME/runs/gsm8k-scaled \
        [--sequences 16] [--variants sft,kd,kd-reference,kd-packed] [--json out.json]
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


def run_variant(cfg, records, variant: str) -> dict:
    """Forward + backward over the same rows, one row per micro-batch, as on CPU. Variants:
    sft           the SFT loss on these rows (cpu_loss.labelled_ce: cross-entropy on the labelled logits)
    kd            offline KD as `seqdistill kd` trains: CE + KL on the top-K, fused (kd_loss.kd_and_ce_sums)
    kd-reference  the same loss through the reference path (cross_entropy + kd_loss, autograd)
    kd-packed     kd with kd.packing (rows of <= max_length)"""
    from seqdistill import kd_trainer
    from seqdistill.cpu_loss import labelled_ce

    torch.manual_seed(0)
    cfg = cfg.model_copy(deep=True)
    cfg.kd.packing, cfg.kd.mode = variant == "kd-packed", "offline"
    kd_trainer.FUSED_BUCKET = variant != "kd-reference"
    source = student_source(cfg, cfg.kd)
    trainer_cls, ds, extra = offline_trainer(cfg, records, *source)
    inputs = load_inputs(cfg, cfg.kd, "kd", Path("unused"), ds, source)
    trainer, _, _ = build_trainer(cfg, cfg.kd, "kd", Path(tempfile.mkdtemp()), Path("unused"),
                                  trainer_cls=trainer_cls, inputs=inputs, remove_unused_columns=False, **extra)
    model = trainer.model
    model.train()
    collate = trainer.data_collator
    rows = [ds[i] for i in range(len(ds))]
    batches = [collate([r]) for r in rows]
    tokens = sum(len(r["input_ids"]) for r in rows)
    items = torch.tensor(sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches))
    times = []
    for rep in range(2):
        t0 = time.perf_counter()
        for b in batches:
            with trainer.compute_loss_context_manager():
                if variant == "sft":
                    plain = {k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "position_ids",
                                                                 "labels")}
                    loss = labelled_ce(model, plain, items)[0]
                else:
                    loss = trainer.compute_loss(model, dict(b), num_items_in_batch=items)
            loss.backward()
            model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        print(f"  {variant} pass {rep} ({'warm-up' if rep == 0 else 'timed'}): {len(batches)} micro-batches, "
              f"{tokens} tokens in {times[-1]:.1f} s ({tokens / times[-1]:.1f} tok/s)", flush=True)
    kd_trainer.FUSED_BUCKET = True
    return {"rows": len(rows), "tokens": tokens, "seconds": times[1], "tokens_per_s": tokens / times[1],
            "warmup_s": times[0], "params": count_params(source[0])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--recipe", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--sequences", type=int, default=16, help="first N kept traces (the same N for every variant)")
    ap.add_argument("--variants", default="sft,kd,kd-reference")
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = load_recipe(args.recipe, args.set)
    torch.set_num_threads(cfg.num_threads or torch.get_num_threads())
    records = load_kd_records(cfg.kd.dataset or str(cfg.stage_dir("filter") / "kept"))[:args.sequences]
    res = {v: run_variant(cfg, records, v) for v in args.variants.split(",")}
    base = res.get("sft")
    peak = max(tflops(n, torch.bfloat16, 1.0) for n in (1024, 2048))
    any_res = next(iter(res.values()))
    bound = peak * 1e12 / (4 * any_res["params"])
    res["peak_bf16_tflops"], res["lora_bound_tokens_per_s"] = peak, bound
    print(f"bf16 matmul peak here now: {peak:.2f} TFLOP/s; LoRA bound ~4 x {any_res['params'] / 1e6:.0f}M params "
          f"FLOPs/token = {bound:.0f} tokens/s")
    for v in args.variants.split(","):
        r = res[v]
        vs = f", {r['tokens_per_s'] / base['tokens_per_s']:.2f}x sft" if base else ""
        print(f"{v:13s} {r['rows']} rows, {r['tokens']} tokens: {r['tokens_per_s']:.1f} tok/s{vs} "
              f"({r['tokens_per_s'] / bound:.1%} of the bound)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
