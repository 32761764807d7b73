"""The CPU's measured matmul peak (fp32 and bf16), the denominator for "SFT tokens/s as a share of the limit".

Run with nothing else on the machine: `python bench/matmul_peak.py [--threads N]`. Prints TFLOP/s for square
matmuls of a few sizes and the best one per dtype, and which ISA oneDNN may use (AMX / AVX-512 BF16 / AVX2)."""

from __future__ import annotations

import argparse
import json
import time

import torch


def cpu_flags() -> set[str]:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def tflops(n: int, dtype: torch.dtype, seconds: float = 2.0) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--sizes", default="1024,2048,4096")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    flags = cpu_flags()
    isa = [f for f in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f in flags]
    out = {"threads": torch.get_num_threads(), "isa": isa, "fp32": {}, "bf16": {}}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for n in map(int, args.sizes.split(",")):
            out[name][n] = round(tflops(n, dt), 3)
            print(f"{name} {n}x{n}: {out[name][n]:.3f} TFLOP/s", flush=True)
        out[f"{name}_peak"] = max(out[name].values())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
