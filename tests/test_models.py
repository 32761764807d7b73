import hashlib

import pytest

import seqdistill.models as models
from seqdistill.errors import ConfigError


def test_packaged_model_missing_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQDISTILL_CACHE", str(tmp_path))
    monkeypatch.setitem(models.PACKAGED, "fake-model",
                        models.PackagedModel("seqdistill-no-such-part", 2, "1.0", 10, "0" * 64))
    with pytest.raises(ConfigError, match=r"seqdistill-no-such-part1 is not installed.*\.\[demo\]"):
        models.resolve("packaged:fake-model")
    with pytest.raises(ConfigError, match="unknown packaged model"):
        models.resolve("packaged:nope")


def test_assembly_checks_sha256_and_writes_nothing_on_mismatch(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQDISTILL_CACHE", str(tmp_path / "cache"))
    parts = []
    for i, chunk in enumerate([b"GGUF-part-one|", b"part-two"]):
        p = tmp_path / f"part{i:02d}.bin"
        p.write_bytes(chunk)
        parts.append(p)
    blob = b"GGUF-part-one|part-two"
    monkeypatch.setattr(models, "_part_files", lambda name, spec: parts)
    monkeypatch.setitem(models.PACKAGED, "fake", models.PackagedModel("x", 2, "1", len(blob), "f" * 64))
    with pytest.raises(ConfigError, match="sha256"):
        models.assemble_gguf("fake")
    assert not list((tmp_path / "cache" / "gguf").glob("*"))  # the temp file is removed
    monkeypatch.setitem(models.PACKAGED, "fake", models.PackagedModel(
        "x", 2, "1", len(blob), hashlib.sha256(blob).hexdigest()))
    out = models.assemble_gguf("fake")
    assert out.read_bytes() == blob and out.name == "fake.gguf"


def test_local_sources(tiny, tmp_path):
    assert models.resolve(str(tiny["student"])) == str(tiny["student"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        models.resolve(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="GGUF file not found"):
        models.resolve(str(tmp_path / "m.gguf"))
    with pytest.raises(ConfigError, match="model folder not found"):
        models.resolve("./no/such/dir")
    assert models.resolve("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"  # hub id passes through
