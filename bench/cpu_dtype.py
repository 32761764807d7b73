"""fp32 vs bf16 on this CPU, side by side in one run: generate tokens/s of the demo pair (hf backend, greedy) and
accuracy on the demo's held-out problems in both dtypes. Prints what `dtype: auto` picks here and why.

    python bench/cpu_dtype.py [--prompts 16] [--eval 48] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from seqdistill.config import load_recipe, validate
from seqdistill.generate import run_generate
from seqdistill.models import cpu_has_native_bf16, pick_dtype
from seqdistill.store import Store
from seqdistill.verify import CORRECT, check_many

DEMO_PROMPT = load_recipe(Path(__file__).resolve().parent.parent / "recipes/demo/cpu.yaml").prompt.model_dump()
MODELS = {"0.5B": "packaged:qwen2.5-coder-0.5b-instruct", "1.5B": "packaged:qwen2.5-coder-1.5b-instruct"}


def run(model: str, dtype: str, n: int, split: str, max_tokens: int, threads: int, root: Path) -> tuple[float, list]:
    cfg = validate({"run_dir": str(root / f"{Path(model).name}-{dtype}-{split}"), "num_threads": threads,
                    "teacher": {"path": model, "dtype": dtype},
                    "data": {"synthetic": {"n": n, "split": split, "steps": 3, "max_value": 20}, "task": "arithmetic"},
                    "prompt": DEMO_PROMPT,
                    "generate": {"batch_size": 16, "sampling": {"n": 1, "temperature": 0.0, "max_tokens": max_tokens}}})
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


if __name__ == "__main__":
    main()
