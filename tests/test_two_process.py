"""Multi-GPU users run `torchrun` / `accelerate launch`: the same path on CPU with two processes (gloo). SFT and
KD with 2 processes x batch b train exactly as 1 process x batch 2b and as 1 process x b with accumulation 2
(same losses, same weights), and a 2-process run resumes from its checkpoint to the same weights."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, write_recipe
from safetensors.torch import load_file
from test_sft import kept_dir

pytestmark = pytest.mark.slow

TRAIN = {"max_steps": 4, "learning_rate": 1e-3, "max_length": 128, "lr_scheduler_type": "constant",
         "warmup_ratio": 0.0, "save_steps": 2, "logging_steps": 1, "packing": False, "seed": 0}


def launch(recipe, stage: str, procs: int, *extra: str):
    """`seqdistill STAGE -r RECIPE` under torch.distributed.run with `procs` CPU processes (gloo)."""
    runner = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] \
        if procs > 1 else [sys.executable]
    done = subprocess.run([*runner, "-m", "seqdistill.cli", stage, "-r", str(recipe), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


def losses(out):
    return [e["loss"] for e in json.loads((out / "train_log.json").read_text()) if "loss" in e]


def run(tmp_path, tiny, name, stage, procs, batch, accum, **section):
    root = tmp_path / name
    kept_dir(root / "filter")
    recipe = write_recipe(root, tiny, run_dir=str(root), **{stage: {
        **TRAIN, "per_device_train_batch_size": batch, "gradient_accumulation_steps": accum,
        "dataset": str(root / "filter" / "kept"), **section}})
    launch(recipe, stage, procs)
    return root / stage, recipe


@pytest.mark.parametrize("stage,section", [("sft", {}), ("kd", {"mode": "online", "alpha": 0.5})])
def test_two_processes_train_like_one_with_twice_the_batch(tmp_path, tiny, stage, section):
    two, _ = run(tmp_path, tiny, "two", stage, procs=2, batch=1, accum=1, **section)
    one, _ = run(tmp_path, tiny, "one", stage, procs=1, batch=2, accum=1, **section)
    acc, _ = run(tmp_path, tiny, "acc", stage, procs=1, batch=1, accum=2, **section)
    assert len(losses(two)) == 4
    # two ranks really trained (one RNG state each in the checkpoint), and one process in the others
    assert (two / "checkpoints" / "checkpoint-2" / "rng_state_1.pth").is_file()
    assert not (one / "checkpoints" / "checkpoint-2" / "rng_state_1.pth").exists()
    for other in (one, acc):
        assert losses(two) == pytest.approx(losses(other), rel=1e-4, abs=1e-5)
        w2, w1 = weights(two / "model"), weights(other / "model")
        assert w2.keys() == w1.keys()
        for key in w2:
            torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5, msg=key)


def test_two_process_run_resumes_from_its_checkpoint(tmp_path, tiny):
    """A 2-process SFT stopped after its step-2 checkpoint (final model, later checkpoints and the finished mark
    gone, as a kill leaves them) resumes under 2 processes and ends with the uninterrupted run's weights."""
    import shutil

    out, recipe = run(tmp_path, tiny, "two", "sft", procs=2, batch=1, accum=1)
    full = weights(out / "model")
    shutil.rmtree(out / "model")
    for ck in (out / "checkpoints").glob("checkpoint-*"):
        if ck.name != "checkpoint-2":
            shutil.rmtree(ck)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    launch(recipe, "sft", 2, "--resume")
    resumed = weights(out / "model")
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=1e-4, atol=1e-5, msg=key)
    assert [e["step"] for e in json.loads((out / "train_log.json").read_text()) if "loss" in e][-2:] == [3, 4]
