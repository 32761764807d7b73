"""SFT throughput on a long-tailed length mix (many short traces, few very long), measured side by side:
packed (padding-free BFD) vs padded batches, and `seqdistill sft` vs a bare TRL SFTTrainer script with the
same settings. Default: small random Qwen2 + the tests' tiny tokenizer, CPU. With --model and --data: a real
student (e.g. the packaged 0.5B, LoRA) on real kept traces (a filter output dir, e.g. the GSM8K run's).

    python bench/sft_throughput.py [--examples 256] [--steps 20] [--hidden 256]
    python bench/sft_throughput.py --model packaged:qwen2.5-coder-0.5b-instruct --data runs/gsm8k-cpu/filter \
        --lora --bf16 --steps 4 --reps 1
    python bench/sft_throughput.py --profile   # where the wrapper's time goes, phase by phase, ours vs bare
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torch  # noqa: E402
from conftest import build_model, build_tokenizer  # noqa: E402
from fakes import rec  # noqa: E402

from seqdistill.config import validate  # noqa: E402
from seqdistill.records import FILTER_SCHEMA  # noqa: E402
from seqdistill.sft import run_sft  # noqa: E402
from seqdistill.store import Store  # noqa: E402


def long_tailed(n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        words = int(min(900, rng.lognormvariate(3.5, 0.9)))  # median ~33 words, tail to ~900
        vocab = ["add", "three", "apples", "then", "seven", "so", "we", "get"]
        body = " ".join(rng.choice(vocab) for _ in range(words))
        r = rec(f"p{i}", 0, f"<think>\n{body}\n</think>\nSo \\boxed{{{i}}}.")
        r.update(verdict="correct", pred=None, verify_reason="", pass_rate=1.0, reject_reason=None)
        out.append(r)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", help="a real student (folder or packaged:NAME) instead of the toy")
    ap.add_argument("--data", help="a filter output dir whose kept traces to train on instead of the toy mix")
    ap.add_argument("--lora", action="store_true", help="LoRA r=32 on all linear layers")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CPUs with native bf16)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--profile", action="store_true",
                    help="instead of the ratios: one run each of ours and bare under cProfile, time per phase")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp())
    if args.model:
        from seqdistill.models import resolve

        student = resolve(args.model)
    else:
        tok = build_tokenizer(tmp / "tok")
        student = build_model(tmp / "student", tok, hidden=args.hidden, layers=4)
    data = args.data
    if data is None:
        kept = Store(tmp / "filter", "kept")
        kept.prepare("filter", "bench", {})
        kept.write_shard(long_tailed(args.examples, random.Random(0)), "part", FILTER_SCHEMA)
        kept.update_manifest(complete=True)
        data = str(tmp / "filter")
    lora = {"r": 32, "alpha": 64, "dropout": 0.0, "target_modules": "all-linear", "merge": False} if args.lora else None
    common = {"max_steps": args.steps, "max_length": 1024, "per_device_train_batch_size": 4,
              "learning_rate": 1e-4, "save_steps": 10_000, "logging_steps": 1, "dataset": data,
              "lora": lora, "bf16": args.bf16}

    def ours(packing, tag):
        cfg = validate({"run_dir": str(tmp / tag), "num_threads": args.threads, "student": {"path": str(student)},
                        "sft": {**common, "packing": packing}})
        t0 = time.perf_counter()
        final = run_sft(cfg)
        wall = time.perf_counter() - t0
        import json

        log = json.loads((final.parent / "train_log.json").read_text())
        tokens = max(e.get("num_tokens", 0) for e in log)
        train_s = next(e["train_runtime"] for e in log if "train_runtime" in e)
        return tokens, train_s, wall

    def bare(tag):
        import datasets
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTConfig, SFTTrainer

        t0 = time.perf_counter()
        ds = datasets.load_dataset("parquet", data_files=str(Path(data) / "kept" / "*.parquet"),
                                   split="train").select_columns(["messages"])
        tk = AutoTokenizer.from_pretrained(student)
        model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.bfloat16 if args.bf16 else torch.float32)
        a = SFTConfig(output_dir=str(tmp / tag), max_steps=args.steps, max_length=1024, packing=True,
                      packing_strategy="bfd", learning_rate=1e-4, save_steps=10_000,
                      # the layout ours uses on CPU (train.cpu_packed_micro_batches): 4 packed rows per step
                      per_device_train_batch_size=1, gradient_accumulation_steps=4,
                      logging_steps=1, assistant_only_loss=True, bf16=args.bf16, use_cpu=True, report_to="none",
                      gradient_checkpointing=False, warmup_steps=0.03, lr_scheduler_type="cosine")
        peft = None
        if lora:
            from peft import LoraConfig

            peft = LoraConfig(r=32, lora_alpha=64, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
        tr = SFTTrainer(model=model, args=a, train_dataset=ds, processing_class=tk, peft_config=peft)
        out = tr.train()
        tr.save_model(str(tmp / tag / "model"))
        return out.metrics["train_runtime"], time.perf_counter() - t0

    if not args.model:
        ours(True, "warmup")
    if args.profile:
        return profile(lambda: ours(True, "profiled"), lambda: bare("bare-profiled"))
    runs = []
    for rep in range(args.reps):  # alternate ours / bare so drift on a shared machine hits both sides; keep the best
        runs.append((ours(True, f"packed{rep}"), bare(f"bare{rep}")))
    tok_p, s_p, wall_p = min((r[0] for r in runs), key=lambda x: x[1])
    b_train, b_wall = min((r[1] for r in runs), key=lambda x: x[0])
    tok_u, s_u, _ = ours(False, "padded")
    what = f"{args.model} on {data}" if args.model else f"{args.examples} long-tailed examples, hidden {args.hidden}"
    print(f"{what}, {args.steps} steps x batch 4, lora={bool(lora)}, bf16={args.bf16}, CPU")
    print(f"packed (padding-free BFD): {tok_p / s_p:8.0f} tokens/s   ({tok_p} tokens, {s_p:.1f} s)")
    print(f"padded                   : {tok_u / s_u:8.0f} tokens/s   ({tok_u} tokens, {s_u:.1f} s)")
    print(f"packed / padded          : {(tok_p / s_p) / (tok_u / s_u):8.2f}x  (target >= 1.5x; on CPU each packed "
          "1024-token row is its own micro-batch: SDPA has no varlen kernel)")
    print(f"seqdistill sft vs bare TRL script (same settings): train {s_p:.1f} s vs {b_train:.1f} s "
          f"-> overhead {s_p / b_train - 1:+.1%} in training; end to end {wall_p:.1f} s vs {b_wall:.1f} s "
          f"({wall_p / b_wall - 1:+.1%}, includes our input checks and atomic save) (target <= 2%)")


# (label, file suffix, function): the phases of a run, ours and bare; cumulative seconds under cProfile
PHASES = [
    ("our input checks (dataset, template, EOS, reasoning kept, prompt-only rows)", "seqdistill/train.py",
     "load_inputs"),
    ("load the model", "seqdistill/train.py", "load_student"),
    ("load the model", "transformers/models/auto/auto_factory.py", "from_pretrained"),
    ("SFTTrainer(...) (tokenize, pack)", "trl/trainer/sft_trainer.py", "__init__"),
    ("trainer.train()", "transformers/trainer.py", "train"),
    ("  of it: our throughput callback", "seqdistill/train.py", "on_log"),
    ("  of it: the training loop", "transformers/trainer.py", "_inner_training_loop"),
    ("save (ours: generation config, atomic rename)", "seqdistill/train.py", "save_final"),
    ("save", "transformers/trainer.py", "save_model"),
    ("manifest, fingerprints, train_log.json", "seqdistill/store.py", "update_manifest"),
    ("manifest, fingerprints, train_log.json", "seqdistill/store.py", "input_fingerprint"),
]


def profile(run_ours, run_bare):
    """Where the wall time of one run goes, ours next to bare. cProfile slows Python-heavy code more than
    torch kernels, so read shares, not absolute seconds."""
    rows = {}
    for side, fn in (("ours", run_ours), ("bare", run_bare)):
        prof = cProfile.Profile()
        prof.enable()
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
        prof.disable()
        stats = pstats.Stats(prof).stats
        for label, suffix, func in PHASES:
            ct = sum(v[3] for (f, _, name), v in stats.items() if f.endswith(suffix) and name == func)
            if ct:  # a phase's functions differ between ours and bare (load_student wraps from_pretrained)
                rows.setdefault(label, {}).setdefault(side, ct)
        rows.setdefault("wall", {})[side] = wall
    print(f"{'phase':78s} {'ours s':>8s} {'bare s':>8s}")
    for label, v in rows.items():
        print(f"{label:78s} {v.get('ours', 0):8.2f} {v.get('bare', 0):8.2f}")
    w = rows["wall"]
    print(f"ours - bare: {w['ours'] - w['bare']:+.2f} s of {w['bare']:.2f} s ({w['ours'] / w['bare'] - 1:+.1%}, "
          "profiled; the ratio without cProfile comes from a run without --profile)")


if __name__ == "__main__":
    main()
