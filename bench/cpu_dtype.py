"""fp32 vs bf16 on this CPU, side by side in one run: generate tokens/s of the demo pair (hf backend, greedy),
SFT steps/s of the demo student (LoRA as in the demo recipe, on the 1.5B teacher's kept traces) and accuracy on
the demo's held-out problems in both dtypes. Prints what `dtype: auto` and `sft.bf16: null` pick here.

    python bench/cpu_dtype.py [--prompts 16] [--eval 48] [--sft-steps 6] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from seqdistill.config import load_recipe, validate
from seqdistill.filter import run_filter
from seqdistill.generate import run_generate
from seqdistill.models import cpu_has_native_bf16, pick_dtype
from seqdistill.sft import run_sft
from seqdistill.store import Store
from seqdistill.verify import CORRECT, check_many

DEMO = load_recipe(Path(__file__).resolve().parent.parent / "recipes/demo/cpu.yaml")
DEMO_PROMPT = DEMO.prompt.model_dump()
MODELS = {"0.5B": "packaged:qwen2.5-coder-0.5b-instruct", "1.5B": "packaged:qwen2.5-coder-1.5b-instruct"}


def config(model: str, dtype: str, n: int, split: str, max_tokens: int, threads: int, root: Path):
    return validate({"run_dir": str(root / f"{Path(model).name}-{dtype}-{split}"), "num_threads": threads,
                    "teacher": {"path": model, "dtype": dtype},
                    "data": {"synthetic": {"n": n, "split": split, "steps": 3, "max_value": 20}, "task": "arithmetic"},
                    "prompt": DEMO_PROMPT,
                    "generate": {"batch_size": 16, "sampling": {"n": 1, "temperature": 0.0, "max_tokens": max_tokens}}})


def run(model: str, dtype: str, n: int, split: str, max_tokens: int, threads: int, root: Path) -> tuple[float, list]:
    cfg = config(model, dtype, n, split, max_tokens, threads, root)
    t0 = time.perf_counter()
    out = run_generate(cfg)
    wall = time.perf_counter() - t0
    recs = list(Store(out).records())
    tokens = sum(r["completion_tokens"] for r in recs)
    return tokens / wall, recs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--eval", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--accuracy-model", choices=list(MODELS), default="1.5B")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--sft-steps", type=int, default=6, help="SFT optimizer steps per dtype (0: skip the SFT part)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp())
    print(f"cpu capability {torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}, "
          f"dtype auto -> {pick_dtype('auto', 'cpu')}")
    result = {}
    for label, model in ({} if args.skip_speed else MODELS).items():
        run(model, "float32", 2, "train", 8, args.threads, root / "warm")  # conversion and load outside timing
        speed = {}
        for dtype in ("float32", "bfloat16"):
            speed[dtype], _ = run(model, dtype, args.prompts, "train", 64, args.threads, root)
        result[label] = speed
        print(f"{label} generate tok/s: fp32 {speed['float32']:.1f}, bf16 {speed['bfloat16']:.1f} "
              f"-> bf16/fp32 {speed['bfloat16'] / speed['float32']:.2f}x")
    if args.sft_steps:
        result["sft steps/s"] = sft_speed(args, root)
    m = args.accuracy_model
    correct = {}
    for dtype in ("float32", "bfloat16"):
        _, recs = run(MODELS[m], dtype, args.eval, "test", 128, args.threads, root)
        recs.sort(key=lambda r: r["prompt_id"])
        verdicts = check_many([(r["completion"], r["gold"], "arithmetic") for r in recs], lenient=True)
        correct[dtype] = [v.status == CORRECT for v in verdicts]
        acc = sum(correct[dtype]) / len(recs)
        result[f"{m} accuracy {dtype}"] = acc
        print(f"{m} lenient accuracy on {len(recs)} held-out demo problems (demo prompt, greedy), {dtype}: {acc:.1%}")
    same = sum(a == b for a, b in zip(correct["float32"], correct["bfloat16"]))
    print(f"{m}: same verdict in both dtypes on {same} of {len(correct['float32'])} problems")
    print(json.dumps(result))


def sft_speed(args, root: Path) -> dict:
    """The demo's SFT (LoRA r 16, packed 512-token rows, batch 2) on the 1.5B teacher's kept demo traces, with
    sft.bf16 forced true then false on the same data; the first step is not timed (allocator, thread pool)."""
    import json

    cfg = config(MODELS["1.5B"], "auto", 32, "train", 128, args.threads, root / "sft-data")
    run_generate(cfg)
    run_filter(cfg)
    speed = {}
    for bf16 in (False, True):
        sft = {**DEMO.sft.model_dump(), "max_steps": args.sft_steps + 1, "bf16": bf16, "logging_steps": 1,
               "save_steps": 10_000, "output_dir": str(root / f"sft-bf16-{bf16}"), "dataset": None}
        one = validate({**cfg.model_dump(exclude_none=True), "student": {"path": MODELS["0.5B"]}, "sft": sft})
        final = run_sft(one)
        log = json.loads((final.parent / "train_log.json").read_text())
        steps = [e for e in log if "loss" in e]
        # the throughput callback's clock starts at the first logged step: tokens/s since then gives the seconds
        first, last = steps[0], steps[-1]
        seconds = (last["num_tokens"] - first["num_tokens"]) / last["tokens_per_s"]
        speed["bf16" if bf16 else "fp32"] = rate = (last["step"] - first["step"]) / seconds
        print(f"sft bf16={bf16}: {rate:.3f} steps/s ({last['tokens_per_s']:.1f} tokens/s) over steps "
              f"{first['step']}-{last['step']}; loss at the last step {last['loss']:.3f}")
    print(f"sft steps/s: fp32 {speed['fp32']:.3f}, bf16 {speed['bf16']:.3f} -> bf16/fp32 "
          f"{speed['bf16'] / speed['fp32']:.2f}x; sft.bf16 null picks bf16={_auto_bf16()} here")
    return speed


def _auto_bf16() -> bool:
    from seqdistill.config import TrainSection
    from seqdistill.train import _bf16

    return _bf16(TrainSection())


if __name__ == "__main__":
    main()
