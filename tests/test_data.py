import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqdistill.chat import build_messages, render
from seqdistill.config import DataConfig, PromptConfig
from seqdistill.data import load_prompts, question_id, select_shard
from seqdistill.errors import ConfigError, DataError
from seqdistill.synthetic import make_problems
from seqdistill.think import split_reasoning

ROWS = [{"q": "What is 2+2?", "a": "4", "uid": "x1"}, {"q": "What is 3*3?", "a": "9", "uid": "x2"}]


def test_jsonl_parquet_csv_give_same_items(tmp_path):
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "d.parquet")
    (tmp_path / "d.csv").write_text("q,a,uid\n" + "".join(f"{r['q']},{r['a']},{r['uid']}\n" for r in ROWS))
    fields = {"question": "q", "answer": "a", "id": "uid"}
    got = [load_prompts(DataConfig(path=str(tmp_path / f"d.{ext}"), fields=fields))
           for ext in ("jsonl", "parquet", "csv")]
    assert got[0] == got[1] == got[2]
    assert got[0][0] == {"id": "x1", "question": "What is 2+2?", "answer": "4"}


def test_hash_ids_limit_shuffle(tmp_path):
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(10)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items = load_prompts(DataConfig(path=str(tmp_path / "d.jsonl")))
    assert items[3]["id"] == question_id("q3") and len({i["id"] for i in items}) == 10
    a = load_prompts(DataConfig(path=str(tmp_path / "d.jsonl"), shuffle=True, seed=1, limit=4))
    b = load_prompts(DataConfig(path=str(tmp_path / "d.jsonl"), shuffle=True, seed=1, limit=4))
    assert a == b and len(a) == 4 and [i["question"] for i in a] != ["q0", "q1", "q2", "q3"]


@pytest.mark.parametrize("content,fields,match", [
    ('{"question": "a", "answer": 1}\n{"question": "a", "answer": 2}\n', {}, "same id"),
    ('{"prompt": "a", "answer": 1}\n', {}, "missing question field 'question'"),
    ('{"question": "a"}\n', {}, "missing answer field 'answer'"),
    ("", {}, "empty"),
    ('{"question": "a", "answer": 1}\nnot json\n', {}, r"d.jsonl:2: not valid JSON"),
])
def test_bad_data_errors_name_the_problem(tmp_path, content, fields, match):
    (tmp_path / "d.jsonl").write_text(content)
    with pytest.raises(DataError, match=match):
        load_prompts(DataConfig(path=str(tmp_path / "d.jsonl"), fields=fields))


def test_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_prompts(DataConfig(path=str(tmp_path / "x.jsonl")))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type"):
        load_prompts(DataConfig(path=str(tmp_path / "x.txt")))


def _replay(question: str) -> int:
    import re

    value = None
    for sentence in re.split(r"(?<=\.) ", question):
        if m := re.fullmatch(r"\w+ has (\d+) \w+\.", sentence):
            value = int(m.group(1))
        elif m := re.fullmatch(r"\w+ gets (\d+) more \w+\.", sentence):
            value += int(m.group(1))
        elif m := re.fullmatch(r"\w+ gives away (\d+) \w+\.", sentence):
            value -= int(m.group(1))
        elif m := re.fullmatch(r"Then \w+ (doubles|triples|quadruples) the number of \w+\.", sentence):
            value *= {"doubles": 2, "triples": 3, "quadruples": 4}[m.group(1)]
        else:
            assert sentence.startswith("How many"), sentence
    return value


def test_synthetic_is_seeded_exact_and_splits_are_disjoint():
    train = make_problems(100, "train", steps=3, max_value=30)
    assert train == make_problems(100, "train", steps=3, max_value=30)
    test = make_problems(40, "test", steps=3, max_value=30)
    assert not {p["question"] for p in train} & {p["question"] for p in test}
    # answers are exact: recompute each by replaying its sentences
    for p in make_problems(30, "train", steps=4, max_value=20) + test:
        assert int(p["answer"]) == _replay(p["question"]) and p["question"].endswith("now?")
    harder = make_problems(20, "train", steps=5, max_value=99)
    assert max(int(p["answer"]) for p in harder) > max(int(p["answer"]) for p in make_problems(20, "train", 1, 5))


def test_shard_split_covers_every_prompt_exactly_once():
    items = [{"id": question_id(f"q{i}"), "question": f"q{i}", "answer": "1"} for i in range(101)]
    parts = [select_shard(items, f"{i}/3") for i in range(3)]
    ids = [it["id"] for part in parts for it in part]
    assert sorted(ids) == sorted(it["id"] for it in items) and all(parts)
    with pytest.raises(DataError, match="0 <= i < N"):
        select_shard(items, "3/3")


def test_chat_rendering_with_prefill_and_system(tiny):
    msgs = build_messages("What is 2+2?", PromptConfig(system="Be brief."))
    assert msgs[0] == {"role": "system", "content": "Be brief."}
    assert msgs[1]["content"].startswith("What is 2+2?\nPlease reason step by step")
    text = render(tiny["tok"], msgs, "<think>\n")
    assert text.endswith("<|im_start|>assistant\n<think>\n") and "Be brief." in text
    with pytest.raises(ConfigError, match="prompt.template"):
        build_messages("x", PromptConfig(template="no_such_template"))


@pytest.mark.parametrize("text,want", [
    ("<think>\nabc\n</think>\nThe answer is 4", ("abc", "The answer is 4", True)),
    ("<think>\nabc and then 4", ("abc and then 4", "", False)),
    ("just 4", ("", "just 4", True)),
])
def test_split_reasoning(text, want):
    assert split_reasoning(text) == want
