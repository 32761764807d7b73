"""Dataset cards: written with generate and filter outputs, parsed by huggingface_hub, and `datasets` loads the
folders through the card's `configs`. `push`: the network part cannot run here, so the upload calls' arguments
are checked against a recording fake, and bad folders are refused before any call."""

import json

import datasets
import pytest
from conftest import cli
from huggingface_hub import DatasetCard

from seqdistill.cards import push, push_plan
from seqdistill.errors import ConfigError, DataError
from seqdistill.filter import run_filter
from seqdistill.generate import run_generate


@pytest.fixture
def outputs(make_cfg):
    cfg = make_cfg(dataset_license="mit", filter={"require_correct": False, "drop_truncated": False,
                                                  "require_boxed": False, "drop_garbage": False,
                                                  "select": "first_k", "k": 1, "near_dup_threshold": None})
    return cfg, run_generate(cfg), run_filter(cfg)


def test_cards_are_valid_and_load_the_data(outputs):
    cfg, gen, filt = outputs
    card = DatasetCard.load(gen / "README.md")
    assert card.data.license == "mit" and card.data.size_categories == ["n<1K"]
    assert "temperature" in card.text and "{question}" in card.text and "teacher" in card.text
    assert len(datasets.load_dataset(str(gen), split="train")) == 12
    stats = json.loads((filt / "stats.json").read_text())
    fcard = DatasetCard.load(filt / "README.md")
    assert f"{stats['kept']} verified traces kept of {stats['input_records']}" in fcard.text
    assert "| not_selected | 6 |" in fcard.text
    kept = datasets.load_dataset(str(filt), split="train")
    rejected = datasets.load_dataset(str(filt), "rejected", split="train")
    assert (len(kept), len(rejected)) == (stats["kept"], stats["rejected"]) == (6, 6)
    assert set(rejected["reject_reason"]) == {"not_selected"} and "messages" in kept.column_names


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, *a, **kw):
        self.calls.append(("create_repo", a, kw))

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", (), kw))
        return type("Info", (), {"commit_url": "https://hub/commit/1"})()


def test_push_dataset_and_model_call_the_hub_with_the_right_arguments(outputs, tiny):
    _, _, filt = outputs
    api = FakeApi()
    assert push(filt, "me/traces", private=True, api=api) == "https://hub/commit/1"
    (name, args, kw), (name2, _, up) = api.calls
    assert name == "create_repo" and args == ("me/traces",) and kw == {"repo_type": "dataset", "private": True,
                                                                        "exist_ok": True}
    assert name2 == "upload_folder" and up["repo_type"] == "dataset" and up["folder_path"] == str(filt)
    assert ".tmp-*" in up["ignore_patterns"] and "checkpoints/**" in up["ignore_patterns"]
    assert push_plan(tiny["student"], "me/student")["repo_type"] == "model"


def test_push_refuses_before_any_network_call(outputs, tmp_path):
    cfg, gen, _ = outputs
    with pytest.raises(ConfigError, match="OWNER/NAME"):
        push_plan(gen, "noslash")
    (gen / "README.md").unlink()
    with pytest.raises(DataError, match="no dataset card"):
        push_plan(gen, "me/x")
    with pytest.raises(DataError, match="neither a model folder"):
        push_plan(tmp_path, "me/x")
    r = cli("push", str(tmp_path / "missing"), "--repo", "me/x")
    assert r.returncode == 2 and "folder not found" in r.stderr
