"""Offline KD from captured logprobs, measured in one run on one tiny teacher/student pair (CPU):
- bytes/token of the stored top-K logprobs for K in {1, 8, 20, 64} (target <= 150 B/token at K=20);
- generation time with capture on vs off (target <= 10% extra);
- offline vs online KD: step time and peak memory (each mode in its own process, max RSS).

    python bench/kd_offline.py [--prompts 32] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torch  # noqa: E402
from conftest import build_model, build_tokenizer, recipe  # noqa: E402

from seqdistill.config import validate  # noqa: E402
from seqdistill.generate import run_generate  # noqa: E402
from seqdistill.store import Store  # noqa: E402


def child(mode: str, cfg_path: str) -> None:
    from seqdistill.kd import run_kd

    cfg = validate(json.loads(Path(cfg_path).read_text()))
    cfg.kd.mode = mode
    cfg.kd.output_dir = str(Path(cfg.run_dir) / f"kd-{mode}")
    final = run_kd(cfg)
    log = json.loads((final.parent / "train_log.json").read_text())
    runtime = next(e["train_runtime"] for e in log if "train_runtime" in e)
    print(json.dumps({"step_s": runtime / cfg.kd.max_steps,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--child", nargs=2)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp())
    tok = build_tokenizer(tmp / "tok")
    tiny = {"tok": tok, "student": build_model(tmp / "student", tok, hidden=128, layers=2),
            "teacher": build_model(tmp / "teacher", tok, hidden=256, layers=4, seed=1)}

    def gen(tag, k):
        data = recipe(tmp / tag, tiny, data={"synthetic": {"n": args.prompts}, "task": "arithmetic"},
                      generate={"batch_size": 8, "logprobs": k,
                                "sampling": {"n": 1, "max_tokens": args.max_tokens, "temperature": 1.0}})
        t0 = time.perf_counter()
        out = run_generate(validate(data))
        return time.perf_counter() - t0, out

    gen("warmup", None)
    off = min(gen(f"off{i}", None)[0] for i in range(2))
    on = min(gen(f"on{i}", 20)[0] for i in range(2))
    print(f"generation with top-20 capture vs without: {on:.2f} s vs {off:.2f} s -> {on / off - 1:+.1%} "
          "(target <= +10%)")
    _, base = gen("k0", None)
    base_bytes = sum(f.stat().st_size for f in Store(base).shard_files())
    for k in (1, 8, 20, 64):
        _, out = gen(f"k{k}", k)
        tokens = sum(Store(out).column("completion_tokens"))
        size = sum(f.stat().st_size for f in Store(out).shard_files()) - base_bytes
        print(f"K={k:>2}: {size / tokens:6.1f} B/token on disk (parquet), {6 * k} B/token raw"
              + ("   (target <= 150 at K=20)" if k == 20 else ""))
    data = recipe(tmp / "kdrun", tiny, kd={"max_steps": 10, "max_length": 512, "per_device_train_batch_size": 4,
                                          "save_steps": 10_000, "dataset": str(out)})
    cfg_path = tmp / "kd.json"
    cfg_path.write_text(json.dumps(data))
    res = {}
    for mode in ("offline", "online"):
        p = subprocess.run([sys.executable, __file__, "--child", mode, str(cfg_path)], capture_output=True,
                           text=True, check=True)
        res[mode] = json.loads(p.stdout.strip().splitlines()[-1])
    o, n = res["offline"], res["online"]
    print(f"KD step (batch 4): offline {o['step_s']:.3f} s, online {n['step_s']:.3f} s -> offline is "
          f"{n['step_s'] / o['step_s']:.2f}x faster; peak RSS offline {o['max_rss_mb']:.0f} MB vs online "
          f"{n['max_rss_mb']:.0f} MB (no teacher in memory)")


if __name__ == "__main__":
    main()
