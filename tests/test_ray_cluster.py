"""Ray: lose a node, not only a replica (issue 18). A multi-node cluster on this machine (Ray's own
`cluster_utils.Cluster`: a head and three worker nodes); a worker node that hosts a replica is removed mid-run:
its chunk is redone elsewhere, nothing lost or duplicated. And a killed driver resumes from disk."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from conftest import REPO, write_recipe  # noqa: E402

from seqdistill import distributed  # noqa: E402
from seqdistill.generate import run_generate  # noqa: E402
from seqdistill.store import Store  # noqa: E402

pytestmark = pytest.mark.slow

GEN = {"batch_size": 1, "sampling": {"n": 1, "max_tokens": 48, "temperature": 0.0}}
DATA = {"synthetic": {"n": 40}, "task": "arithmetic"}


@pytest.fixture(scope="module")
def cluster():
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [c.add_node(num_cpus=1) for _ in range(3)]
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, workers
    ray.shutdown()
    c.shutdown()


def _records(out):
    recs = list(Store(out).records())
    keys = [(r["prompt_id"], r["sample_index"]) for r in recs]
    assert len(keys) == len(set(keys)), "a sample was written twice"
    return keys


def test_removing_a_worker_node_mid_run_loses_and_duplicates_nothing(make_cfg, cluster, caplog):
    c, workers = cluster
    cfg = make_cfg(generate={**GEN, "ray": {"address": c.address, "replicas": 2, "num_cpus_per_replica": 1,
                                            "chunk_size": 1}}, data=DATA)
    removed = []

    def remove_a_replica_node():
        deadline = time.time() + 120
        while time.time() < deadline and not removed:
            time.sleep(0.1)
            if len(distributed.REPLICAS) < 2:
                continue
            node_id = ray.get(distributed.REPLICAS[0].node_id.remote())
            for node in workers:
                if node.node_id == node_id:
                    c.remove_node(node, allow_graceful=False)  # the machine goes away, with its replica
                    removed.append(node)
                    return

    t = threading.Thread(target=remove_a_replica_node)
    t.start()
    out = run_generate(cfg)
    t.join()
    assert removed, "the run ended before a node could be removed"
    keys = _records(out)
    assert len(keys) == 40 and Store(out).is_complete()
    assert "replica" in caplog.text and "died" in caplog.text


def test_a_killed_driver_resumes_from_disk(tmp_path, tiny, cluster):
    c, _ = cluster
    recipe = write_recipe(tmp_path, tiny, generate={**GEN, "ray": {"address": c.address, "replicas": 1,
                                                                   "num_cpus_per_replica": 1, "chunk_size": 1}},
                          data=DATA)
    cmd = [sys.executable, "-m", "seqdistill.cli", "generate", "-r", str(recipe)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    out = tmp_path / "run" / "generate"
    deadline = time.time() + 180
    while time.time() < deadline and len(Store(out).shard_files()) < 2:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver dies; its replica is reaped by Ray
    driver.wait()
    done = len(Store(out).shard_files())
    assert 2 <= done < 40
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    keys = _records(out)
    assert len(keys) == 40 and Store(out).is_complete()
