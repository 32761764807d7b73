"""Issue 10: temp files never read as data, damaged shards quarantined and redone, stages chained by
content, a failed start does not block the fix, outputs follow the umask."""

import os

import pyarrow.parquet as pq
import pytest

from seqdistill.errors import SeqdistillError
from seqdistill.store import Store

from fakes import rec
from seqdistill.generate import RECORD_SCHEMA


def _store(tmp_path, n=3):
    s = Store(tmp_path / "st")
    s.prepare("generate", "h", {})
    for i in range(n):
        s.write_shard([rec(f"p{i}", 0, "x")], "s0of1", RECORD_SCHEMA)
    return s


def test_temp_files_are_never_data_and_dead_writers_temps_are_removed(tmp_path):
    s = _store(tmp_path)
    from seqdistill.store import _HOST

    dead = s.data / f".tmp-{_HOST}-999999999-abc.parquet"  # a writer killed mid-write
    live = s.data / f".tmp-{_HOST}-{os.getpid()}-abc.parquet"  # a writer still at work
    dead.write_bytes(b"PAR1 half a file")
    live.write_bytes(b"PAR1 in progress")
    assert len(s.shard_files()) == 3 and s.count() == 3 and len(s.column("prompt_id")) == 3
    assert s.prepare("generate", "h", {}) is True  # resume
    assert not dead.exists() and live.exists()


def test_damaged_shard_is_quarantined_and_names_are_not_reused(tmp_path):
    s = _store(tmp_path)
    victim = s.shard_files()[1]
    victim.write_bytes(victim.read_bytes()[:40])  # cut off
    s.prepare("generate", "h", {})
    assert sorted(s.column("prompt_id")) == ["p0", "p2"]
    assert (s.root / "quarantine" / f"data-{victim.name}").is_file()
    new = s.write_shard([rec("p1", 0, "x")], "s0of1", RECORD_SCHEMA)
    assert new.name == "s0of1-00003.parquet"  # not 00002, which still holds p2
    assert sorted(s.column("prompt_id")) == ["p0", "p1", "p2"]


def test_generate_redoes_exactly_the_prompts_of_a_damaged_shard(make_cfg, tmp_path):
    from seqdistill.generate import run_generate

    cfg = make_cfg(generate={"batch_size": 2, "sampling": {"n": 2, "max_tokens": 6, "temperature": 1.0}})
    out = run_generate(cfg)
    store = Store(out)
    full = sorted((r["prompt_id"], r["sample_index"]) for r in store.records())
    victim = store.shard_files()[0]
    victim.write_bytes(victim.read_bytes()[:100])
    from seqdistill.store import MANIFEST
    import json

    m = json.loads((out / MANIFEST).read_text())
    m["complete"] = False
    (out / MANIFEST).write_text(json.dumps(m))
    run_generate(cfg)
    again = sorted((r["prompt_id"], r["sample_index"]) for r in store.records())
    assert again == full  # complete, no duplicates


def test_changed_upstream_is_never_silently_reused(make_cfg, tmp_path):
    from test_sft import SFT, kept_dir

    from seqdistill.sft import run_sft

    kept_dir(tmp_path / "run" / "filter", n=8)
    cfg = make_cfg(sft={**SFT, "max_steps": 1})
    run_sft(cfg)
    assert run_sft(cfg)  # same input: the finished model is reused
    kept_dir(tmp_path / "run" / "filter", n=4)  # filter rerun with another result
    with pytest.raises(SeqdistillError, match="another config"):
        run_sft(cfg)
    run_sft(cfg, overwrite=True)


def test_a_failed_start_does_not_block_the_corrected_rerun(tmp_path):
    s = Store(tmp_path / "g")
    s.prepare("generate", "wrong-teacher", {})  # then the model failed to load: no records written
    assert s.prepare("generate", "right-teacher", {}) is False
    assert s.manifest()["config_hash"] == "right-teacher"
    s.write_shard([rec("p", 0, "x")], "s0of1", RECORD_SCHEMA)
    with pytest.raises(SeqdistillError, match="refusing to overwrite"):
        s.prepare("generate", "third", {})  # now there is data: refused


def test_shards_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        s = _store(tmp_path, n=1)
    finally:
        os.umask(old)
    assert oct(s.shard_files()[0].stat().st_mode & 0o777) == oct(0o644)
    assert pq.ParquetFile(s.shard_files()[0]).metadata.num_rows == 1
