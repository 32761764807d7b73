"""Where an SFT step's time goes on CPU, and what makes it faster: the recipe's trainer (`build_trainer`, the
same model, LoRA, packing and data `seqdistill sft` uses), timed micro-batch by micro-batch (forward +
backward), in variants measured in one run:

    base      as `seqdistill sft` trains (on CPU: cross-entropy on the labelled positions' logits, cpu_loss.py)
    trl-head  TRL's own loss: its chunked fused LM head over every position (what base was before cpu_loss)
    compact   trl-head projecting only the positions with a label, as TRL does on Triton devices
    compile   base + torch.compile of each decoder layer (sft.compile: regional, one graph for all layers);
              every other variant runs eager whatever the recipe says
    threads1  base with torch.set_num_threads(1) (is the second core helping or fighting?)

Prints tokens/s per variant, the ratio to base, and the share of the matmul peak (the faster of fp32 and bf16)
(bench/matmul_peak.py) at ~4 x params FLOPs per token for LoRA. `--profile` adds torch.profiler's top ops for
the base variant. Run with nothing else on the machine:

    python bench/sft_step.py -r recipes/gsm8k/cpu-scaled-1.5b-to-0.5b.yaml --set run_dir=$HOME/runs/gsm8k-scaled \
        --steps 6 [--variants base,compile] [--profile] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from matmul_peak import tflops  # noqa: E402

from seqdistill.config import load_recipe  # noqa: E402
from seqdistill.models import count_params  # noqa: E402
from seqdistill.train import build_trainer  # noqa: E402


def micro_batches(trainer, k: int) -> list[dict]:
    out = []
    for batch in trainer.get_train_dataloader():
        out.append(batch)
        if len(out) == k:
            return out
    return out


def run_variant(cfg, name: str, steps: int, profile: bool) -> dict:
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp())
    # the variant decides compilation, not the recipe's sft.compile
    section = cfg.sft.model_copy(update={"compile": name == "compile"})
    trainer, _, path = build_trainer(cfg, section, "sft", tmp, cfg.stage_dir("filter") / "kept")
    model = trainer.model
    threads = torch.get_num_threads()
    if name == "threads1":
        torch.set_num_threads(1)
    import trl.trainer.utils as trl_utils

    use_triton = trl_utils._use_triton
    if name == "compact":  # TRL's fused LM head scores only labelled positions on Triton devices; here too
        trl_utils._use_triton = lambda device: True
    if name in ("trl-head", "compact"):  # TRL's own loss: its chunked fused LM head
        import types

        from trl import SFTTrainer

        trainer.compute_loss = types.MethodType(SFTTrainer.compute_loss, trainer)
    trainer.create_optimizer_and_scheduler(num_training_steps=steps + 2)
    model.train()
    batches = micro_batches(trainer, steps + 2)
    times, tokens = [], []
    for i, batch in enumerate(batches):
        n_tok = int(batch["input_ids"].numel())
        items = int((batch["labels"] != -100).sum())
        t0 = time.perf_counter()
        if profile and i == len(batches) - 1:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as prof

            with prof(activities=[ProfilerActivity.CPU]) as p:
                loss = trainer.training_step(model, batch, torch.tensor(items))
            print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        else:
            loss = trainer.training_step(model, batch, torch.tensor(items))
        dt = time.perf_counter() - t0
        if i >= 2:  # the first two: warm-up (allocator, oneDNN primitive caches, compilation)
            times.append(dt)
            tokens.append(n_tok)
        print(f"  {name} micro-batch {i}: {n_tok} tokens in {dt:.2f} s ({n_tok / dt:.1f} tok/s), loss "
              f"{float(loss):.5f}", flush=True)
    torch.set_num_threads(threads)
    trl_utils._use_triton = use_triton
    per = [t / s for t, s in zip(tokens, times)]
    return {"tokens_per_s": sum(tokens) / sum(times), "median_tokens_per_s": statistics.median(per),
            "spread": [min(per), max(per)], "micro_batches": len(times), "tokens": sum(tokens),
            "params": count_params(path)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-r", "--recipe", required=True)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--steps", type=int, default=6, help="timed micro-batches per variant (after 2 warm-up)")
    ap.add_argument("--variants", default="trl-head,base,compile,compact,threads1,trl-head")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = load_recipe(args.recipe, args.set)
    torch.set_num_threads(cfg.num_threads or torch.get_num_threads())
    # the faster of fp32 and bf16: on a CPU without native bf16 (AVX2) bf16 is emulated and fp32 is what trains
    peak = max(tflops(n, dt, 1.0) for n in (1024, 2048) for dt in (torch.float32, torch.bfloat16))
    results = {}
    for i, name in enumerate(args.variants.split(",")):  # a variant listed twice (base,...,base) shows drift
        key = name if name not in results else f"{name}-again"
        results[key] = run_variant(cfg, name, args.steps, args.profile and i == 0 and name == "base")
    params = results[next(iter(results))]["params"]
    base = results.get("base", {}).get("tokens_per_s")
    print(f"matmul peak here now (faster of fp32 / bf16): {peak:.2f} TFLOP/s; LoRA bound ~4 x {params / 1e6:.0f}M "
          f"params FLOPs/token = {peak * 1e12 / (4 * params):.0f} tokens/s")
    for name, r in results.items():
        share = r["tokens_per_s"] * 4 * params / (peak * 1e12)
        ratio = f"{r['tokens_per_s'] / base:.2f}x base" if base else ""
        print(f"{name:9s} {r['tokens_per_s']:7.1f} tokens/s (micro-batch spread {r['spread'][0]:.1f}-"
              f"{r['spread'][1]:.1f})  {share:.1%} of the matmul bound  {ratio}")
    if args.json:
        Path(args.json).write_text(json.dumps({"peak_tflops": peak, "variants": results}, indent=1))


if __name__ == "__main__":
    main()
