"""`report_to: tensorboard` works offline: the event files hold the loss, the CE/KD split and tokens/s
(tokens/s is ours, so our callback must run before the trackers)."""

import pytest
from test_kd import TRAIN

from seqdistill.generate import run_generate
from seqdistill.kd import run_kd

pytest.importorskip("tensorboard")


def scalars(folder) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[float]] = {}
    for f in folder.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(f))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return out


def test_kd_logs_loss_split_and_throughput_to_tensorboard(make_cfg, tiny):
    gen = {"logprobs": 4, "batch_size": 8, "sampling": {"n": 1, "max_tokens": 16, "temperature": 1.0}}
    cfg = make_cfg(data={"synthetic": {"n": 8}, "task": "arithmetic"}, generate=gen,
                   kd={**TRAIN, "max_steps": 4, "logging_steps": 1, "alpha": 0.5, "report_to": "tensorboard"})
    cfg.kd.dataset = str(run_generate(cfg))
    final = run_kd(cfg)
    got = scalars(final.parent)
    assert got, f"no TensorBoard event files under {final.parent}"
    for tag in ("train/loss", "train/ce_loss", "train/kd_loss"):
        assert len(got[tag]) == 4, (tag, sorted(got))
    assert "train/tokens_per_s" in got, sorted(got)
    assert len(got["train/tokens_per_s"]) >= 3 and all(v > 0 for v in got["train/tokens_per_s"])
