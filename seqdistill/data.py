"""Prompt sets: local JSONL/Parquet/CSV, a `datasets` hub name, or the built-in synthetic problems.

Every item comes out as {"id", "question", "answer"} with a stable id (the id field, or a hash of the
question), so resume, sharding and dedup all key on the same thing."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from pathlib import Path

from .config import DataConfig
from .errors import DataError

log = logging.getLogger(__name__)


def question_id(question: str) -> str:
    return hashlib.sha256(question.strip().encode()).hexdigest()[:16]


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".csv"):
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                            "re-encode the file as UTF-8") from None
    if suffix in (".jsonl", ".json"):
        rows = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{lineno}: each line must be a JSON object")
                rows.append(row)
        return rows
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow's own errors on a file that is not (or no longer) Parquet
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:120]})") from None
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .parquet or .csv)")


def _hub_rows(cfg: DataConfig) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(cfg.hub, cfg.hub_config, split=cfg.split)
    except Exception as exc:  # network, missing split, ...: say which dataset
        raise DataError(f"data.hub {cfg.hub!r} (split {cfg.split!r}): cannot load: {exc}") from None
    return ds.to_list()


def load_prompts(cfg: DataConfig, where: str = "data") -> list[dict]:
    if cfg.synthetic is not None:
        from .synthetic import make_problems

        s = cfg.synthetic
        try:
            rows = make_problems(s.n, s.split, s.steps, s.max_value, s.seed)
        except ValueError as exc:
            raise DataError(f"{where}.synthetic: {exc}") from None
        source = f"{where}.synthetic"
    elif cfg.path is not None:
        rows, source = _read_rows(Path(cfg.path)), cfg.path
    else:
        rows, source = _hub_rows(cfg), cfg.hub

    fm = cfg.fields
    items, seen, not_text = [], {}, {}
    for i, row in enumerate(rows):
        if fm.question not in row or row[fm.question] in (None, ""):
            raise DataError(f"{source}: row {i}: missing question field {fm.question!r} "
                            f"(fields: {sorted(row)}); set {where}.fields.question")
        if not isinstance(row[fm.question], str):
            raise DataError(f"{source}: row {i}: field {fm.question!r} is a {type(row[fm.question]).__name__}, not "
                            "text; a question must be a string (it would be stringified into the prompt)")
        question = row[fm.question]
        answer = None
        if fm.answer:
            if fm.answer not in row:
                raise DataError(f"{source}: row {i}: missing answer field {fm.answer!r}; "
                                f"set {where}.fields.answer (or null when there is no gold answer)")
            raw = row[fm.answer]
            answer = None if raw is None else str(raw)
            if raw is not None and not isinstance(raw, str):
                not_text[len(items)] = type(raw).__name__  # test code must be text: a list of asserts is data
        if fm.id:
            if fm.id not in row:
                raise DataError(f"{source}: row {i}: missing id field {fm.id!r}")
            pid = str(row[fm.id])
        else:
            pid = question_id(question)
        if pid in seen:
            raise DataError(f"{source}: rows {seen[pid]} and {i} have the same id {pid!r}"
                            + ("" if fm.id else " (identical questions)"))
        seen[pid] = i
        items.append({"id": pid, "question": question, "answer": answer})
    if not items:
        raise DataError(f"{source}: the prompt set is empty")
    _check_tests(items, cfg, source, where, not_text)
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(items)
    if cfg.limit:
        items = items[: cfg.limit]
    return items


def _check_tests(items: list[dict], cfg: DataConfig, source: str, where: str, not_text: dict[int, str]) -> None:
    """Tasks whose gold is test code (a task that executes programs): tests that could never fail a program are
    named, one line each; a prompt set with no test that can fail is refused (every program would look right)."""
    from .answers import TASKS
    from .judge import tests_without_power

    if not TASKS[cfg.task].executes or not cfg.fields.answer:
        return
    weak = [(it["id"], f"are a {not_text[i]}, not test code" if i in not_text else why)
            for i, it in enumerate(items) if i in not_text or (why := tests_without_power(it["answer"])) is not None]
    for pid, why in weak[:20]:
        log.warning("%s: problem %s: its tests %s: no program can fail them; it is never judged correct", source,
                    pid, why)
    if len(weak) > 20:
        log.warning("%s: ... and %d more problems whose tests cannot fail", source, len(weak) - 20)
    if weak and len(weak) == len(items):
        raise DataError(f"{source}: none of the {len(items)} problems has tests that can fail a program (first: "
                        f"{weak[0][0]}: its tests {weak[0][1]}); check {where}.fields.answer")


def parse_shard(spec: str) -> tuple[int, int]:
    i, n = (int(x) for x in spec.split("/"))
    if n < 1 or not 0 <= i < n:
        raise DataError(f"--shard {spec}: need 0 <= i < N")
    return i, n


def shard_of(prompt_id: str, num_shards: int) -> int:
    # hash, not position: a prompt stays in its shard when the set is re-ordered or extended
    return int(hashlib.sha256(prompt_id.encode()).hexdigest(), 16) % num_shards


def select_shard(items: list[dict], spec: str) -> list[dict]:
    i, n = parse_shard(spec)
    return items if n == 1 else [it for it in items if shard_of(it["id"], n) == i]
