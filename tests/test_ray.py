"""Generation on a local Ray instance (issue 12): two replicas of a tiny hf model give the single-process
result, and killing a replica mid-run loses nothing and duplicates nothing."""

import threading
import time

import pytest

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow  # starts a Ray instance: the full suite (.ci/run) runs it

from seqdistill import distributed  # noqa: E402
from seqdistill.data import load_prompts  # noqa: E402
from seqdistill.generate import run_generate  # noqa: E402
from seqdistill.store import Store  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


GEN = {"batch_size": 1, "sampling": {"n": 1, "max_tokens": 10, "temperature": 0.0}}
RAY = {"replicas": 2, "num_cpus_per_replica": 1, "chunk_size": 1}


def _by_prompt(out):
    recs = list(Store(out).records())
    keys = [(r["prompt_id"], r["sample_index"]) for r in recs]
    assert len(keys) == len(set(keys)), "a sample was written twice"
    return {k: r["completion"] for k, r in zip(keys, recs)}


def test_ray_run_equals_the_single_process_run(make_cfg, tmp_path):
    single = _by_prompt(run_generate(make_cfg(generate=GEN, data={"synthetic": {"n": 6}, "task": "arithmetic"})))
    cfg = make_cfg(generate={**GEN, "ray": RAY, "output_dir": str(tmp_path / "ray-gen")},
                   data={"synthetic": {"n": 6}, "task": "arithmetic"})
    out = run_generate(cfg)
    assert _by_prompt(out) == single and len(single) == 6
    assert Store(out).is_complete()


def test_killing_a_replica_mid_run_loses_and_duplicates_nothing(make_cfg, tmp_path, caplog):
    cfg = make_cfg(generate={**GEN, "ray": RAY, "sampling": {**GEN["sampling"], "max_tokens": 24}},
                   data={"synthetic": {"n": 16}, "task": "arithmetic"})
    out = cfg.stage_dir("generate")
    result, errors = {}, []

    def go():
        try:
            result["out"] = run_generate(cfg)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    worker = threading.Thread(target=go)
    worker.start()
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "data").glob("*.parquet")):
        time.sleep(0.05)
    assert distributed.REPLICAS, "the run ended before a replica could be killed"
    ray.kill(distributed.REPLICAS[0])  # like a node going away: its chunk is lost with it
    worker.join(timeout=300)
    assert not errors, errors
    got = _by_prompt(result["out"])
    assert len(got) == 16 and {p for p, _ in got} == set(it["id"] for it in load_prompts(cfg.data))
    assert "died" in caplog.text and "goes to another replica" in caplog.text
