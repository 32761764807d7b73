"""Stage 2: rejection sampling. Keep the traces whose final answer is verified correct, that are well formed,
within length bounds, not duplicates and not contaminated with a benchmark; explain every rejection.

Output: kept/ (TRL-ready, same record layout), rejected/ (with `reject_reason`), stats.json."""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

from . import legacy
from .cards import write_filter_card
from .chat import load_template
from .config import RecipeConfig, stage_hash
from .data import load_prompts
from .errors import ConfigError, DataError
from .labels import apply_labels, majority_labels
from .overlap import OverlapIndex, jaccard, ngrams
from .records import FILTER_SCHEMA, answer_text
from .report import filter_summary
from .store import Store, atomic_write_text, identity, require_stage_output, writer_scope
from .think import split_reasoning
from .verify import CORRECT, UNVERIFIABLE, WRONG, check_many, get_task

log = logging.getLogger(__name__)

def looks_like_garbage(text: str) -> bool:
    """Deliberately simple: mojibake, control characters, or one line looping."""
    if not text:
        return False
    bad = sum(1 for c in text if c == "\ufffd" or (ord(c) < 32 and c not in "\n\t\r"))
    if bad / len(text) > 0.02:
        return True
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return len(lines) >= 10 and Counter(lines).most_common(1)[0][1] / len(lines) > 0.5


def contamination_index(cfg: RecipeConfig) -> dict[str, OverlapIndex]:
    f = cfg.filter
    return {bench.label(): OverlapIndex([it["question"] for it in
                                         load_prompts(bench, where=f"filter.decontaminate[{i}]")], f.decontam_ngram)
            for i, bench in enumerate(f.decontaminate)}


_OUTPUT_BLOCK = re.compile(r"```[ \t]*output\b", re.IGNORECASE)


def invents_output(rec: dict) -> bool:
    """The trace shows a ```output block: an execution result no program produced (the model wrote it)."""
    return bool(_OUTPUT_BLOCK.search(answer_text(rec)))


def format_reason(rec: dict, cfg: RecipeConfig, need_box: bool) -> str | None:
    f = cfg.filter
    full = answer_text(rec)
    _, answer, closed = split_reasoning(full)
    if f.drop_truncated and rec["finish_reason"] == "length":
        return "truncated"
    if f.drop_unclosed_think and not closed:
        return "unclosed_think"
    if not answer.strip():
        return "empty_answer"
    if need_box and "\\boxed" not in answer and "\\fbox" not in answer:
        return "no_boxed_answer"
    if f.drop_garbage and looks_like_garbage(full):
        return "garbage"
    if f.drop_invented_output and invents_output(rec):
        return "invented_output"
    n = rec["completion_tokens"]
    if f.min_tokens is not None and n < f.min_tokens:
        return "too_short"
    if f.max_tokens is not None and n > f.max_tokens:
        return "too_long"
    return None


def decide(records: list[dict], cfg: RecipeConfig, bench_index: dict[str, OverlapIndex],
           verify_stats: dict, probe=None) -> tuple[list[dict], list[dict], dict]:
    """Annotate every record with its verdict and either keep it or give a reject_reason.

    `probe(records) -> {prompt_id: student pass rate}` (student-aware selection) is asked only about prompts
    that still keep a trace after the rules before it: each probed prompt costs k student samples."""
    f = cfg.filter
    need_box = f.require_boxed if f.require_boxed is not None else "\\boxed" in load_template(cfg.prompt.template)
    majority = None
    if f.majority_labels:
        labels = majority_labels(records, f.majority_min_agreement, f.num_workers, f.timeout_s)
        majority = apply_labels(records, labels, f.num_workers, f.timeout_s)
    else:
        for r in records:
            r["label_source"] = "gold" if r["gold"] is not None else None
    verdicts = check_many([(answer_text(r), r["gold"], r["task"]) for r in records],
                          workers=f.num_workers, timeout=f.timeout_s, stats=verify_stats, sandbox=cfg.sandbox)
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r, v in zip(records, verdicts):
        r.update(verdict=v.status, pred=v.pred, verify_reason=v.reason, verify_detail=v.detail,
                 reject_reason=None)
        in_majority = r.pop("in_majority", True)
        if r.get("label_source") == "majority" and v.status == CORRECT and not in_majority:
            r.update(verdict=WRONG, verify_detail="not in the majority group (equal to the label only by a "
                                                  "convention its voters do not share)")
        by_prompt[r["prompt_id"]].append(r)

    contamination = Counter()
    for pid, group in by_prompt.items():  # the rules that need no student samples
        group.sort(key=lambda r: r["sample_index"])
        rate = sum(r["verdict"] == CORRECT for r in group) / len(group)
        hits = [name for name, index in bench_index.items() if index.hits(group[0]["question"])]
        for name in hits:
            contamination[name] += 1
        for r in group:
            r["pass_rate"] = rate
            reason = format_reason(r, cfg, need_box)
            if reason is None and r["verdict"] != CORRECT and f.require_correct:
                if r["verdict"] == UNVERIFIABLE and f.majority_labels and r["label_source"] is None:
                    reason = "no_majority_label"
                elif r["verdict"] == UNVERIFIABLE:
                    reason = None if f.keep_unverifiable else "unverifiable"
                else:
                    reason = "wrong_answer"
            if reason is None and hits and f.drop_contaminated:
                reason = f"contaminated:{hits[0]}"
            if reason is None and not f.pass_rate_min <= rate <= f.pass_rate_max:
                reason = "pass_rate_out_of_band"
            r["reject_reason"] = reason
    student_rates = None
    if probe is not None:
        student_rates = probe([r for r in records if r["reject_reason"] is None])
    for pid, group in by_prompt.items():  # then the student band, duplicates and selection, in the same order
        seen_text, shingles = set(), []
        candidates = []
        for r in group:
            reason = r["reject_reason"]
            r["student_pass_rate"] = (student_rates or {}).get(pid)
            if reason is None and student_rates is not None:
                band = f.student_probe
                if not band.pass_rate_min <= student_rates.get(pid, 0.0) <= band.pass_rate_max:
                    reason = "student_pass_rate_out_of_band"
            if reason is None and f.dedup:
                text = r["completion"].strip()
                if text in seen_text:
                    reason = "duplicate"
                elif f.near_dup_threshold is not None:
                    sh = ngrams(text, f.near_dup_ngram)
                    if any(jaccard(sh, o) >= f.near_dup_threshold for o in shingles):
                        reason = "near_duplicate"
                    shingles.append(sh)
                seen_text.add(text)
            r["reject_reason"] = reason
            if reason is None:
                candidates.append(r)
        if f.select != "all" and f.k is not None:
            order = (sorted(candidates, key=lambda r: (r["completion_tokens"], r["sample_index"]))
                     if f.select == "shortest_k" else candidates)
            for r in order[f.k:]:
                r["reject_reason"] = "not_selected"
    kept = [r for r in records if r["reject_reason"] is None]
    rejected = [r for r in records if r["reject_reason"] is not None]
    return kept, rejected, {"contamination": dict(contamination), "prompts": len(by_prompt), "majority": majority}


def _mean(xs):
    return sum(xs) / len(xs) if xs else None


def _reasons_by_prompt(records) -> dict[str, set]:
    out: dict[str, set] = defaultdict(set)
    for r in records:
        out[r["prompt_id"]].add(r["reject_reason"])
    return out


def _per_teacher(records) -> dict:
    out: dict = {}
    for r in records:
        t = out.setdefault(r.get("teacher") or "teacher",
                           {"input": 0, "kept": 0, "correct": 0, "reject_reasons": Counter()})
        t["input"] += 1
        t["correct"] += r["verdict"] == CORRECT
        if r["reject_reason"] is None:
            t["kept"] += 1
        else:
            t["reject_reasons"][r["reject_reason"]] += 1
    return {name: {**t, "reject_reasons": dict(t["reject_reasons"].most_common())} for name, t in out.items()}


def summarize(records, kept, rejected, extra, verify_stats, seconds) -> dict:
    rates = {r["prompt_id"]: r["pass_rate"] for r in records}
    hist = [0] * 10
    for rate in rates.values():
        hist[min(int(rate * 10), 9)] += 1
    total = verify_stats.get("fast_path", 0) + verify_stats.get("slow_path", 0)
    return {
        "input_records": len(records), "kept": len(kept), "rejected": len(rejected),
        "prompts": extra["prompts"], "prompts_with_kept": len({r["prompt_id"] for r in kept}),
        "reject_reasons": dict(Counter(r["reject_reason"] for r in rejected).most_common()),
        # prompts that lost every trace to one reason: how many prompts each band / rule removed
        "prompts_removed": dict(Counter(reasons.pop() for pid, reasons in _reasons_by_prompt(records).items()
                                        if len(reasons) == 1 and None not in reasons).most_common()),
        "verdicts": dict(Counter(r["verdict"] for r in records)),
        # traces showing a ```output block no program produced (filter.drop_invented_output rejects them)
        "invented_output": {"traces": sum(invents_output(r) for r in records),
                            "kept": sum(invents_output(r) for r in kept)},
        # the verifier's reason for every trace not judged correct: for code the sandbox's (assertion failed,
        # exception, timeout, ...), for math the path that judged it (fast-path, math-verify, no answer, ...)
        "not_correct_reasons": dict(Counter(r["verify_reason"] for r in records
                                            if r["verdict"] != CORRECT).most_common()),
        "pass_rate_histogram": {f"{i / 10:.1f}-{(i + 1) / 10:.1f}": h for i, h in enumerate(hist)},
        "mean_tokens_kept": _mean([r["completion_tokens"] for r in kept]),
        "mean_tokens_rejected": _mean([r["completion_tokens"] for r in rejected]),
        "contamination_hits": extra["contamination"],
        "per_teacher": _per_teacher(records),
        "verify_fast_path_share": verify_stats.get("fast_path", 0) / total if total else None,
        "per_prompt_pass_rate": rates, "seconds": seconds,
        **({"majority_labels": extra["majority"]} if extra.get("majority") is not None else {}),
        **({"student_pass_rate": {r["prompt_id"]: r["student_pass_rate"] for r in records  # probed prompts only
                                  if r.get("student_pass_rate") is not None}}
           if any(r.get("student_pass_rate") is not None for r in records) else {}),
    }


@writer_scope
def run_filter(cfg: RecipeConfig, overwrite: bool = False) -> Path:
    f = cfg.filter
    src = Path(f.input_dir) if f.input_dir else cfg.stage_dir("generate")
    source = require_stage_output(src, "generate", "filter.input_dir")
    import pyarrow.parquet as pq

    columns = set(pq.read_schema(source.shard_files()[0]).names) if source.shard_files() else set()
    for name in ("messages", "gold", "task", "completion", "finish_reason"):
        if name not in columns:
            raise DataError(f"{src}: records lack the {name!r} column; not a seqdistill generate output")
    for t in set(source.column("task")):
        if f.majority_labels and get_task(t).executes:
            raise ConfigError(f"filter.majority_labels: {src}: task {t!r} is judged by running its tests, and "
                              "programs have no majority answer to label with; give every record its tests")
    golds = source.column("gold")
    if all(g is None or g == "" for g in golds) and not f.majority_labels:
        raise DataError(f"{src}: no record has a gold answer, nothing can be verified; "
                        "set data.fields.answer when generating, or filter.majority_labels: true")
    if f.pass_rate_min > 0 or f.pass_rate_max < 1:
        per_prompt = Counter(source.column("prompt_id"))
        if per_prompt and max(per_prompt.values()) == 1:
            raise ConfigError(
                f"filter.pass_rate_min/pass_rate_max: a band [{f.pass_rate_min}, {f.pass_rate_max}] needs several "
                "samples per prompt, but every prompt in the input has one (generate.sampling.n: 1): its pass "
                "rate is 0 or 1, so the band would keep all or nothing. Generate with n >= 2 or drop the band")
    out = cfg.stage_dir("filter")
    store = Store(out, "kept")
    drop = ("filter.output_dir", "filter.num_workers", "filter.input_dir")
    upstream = source.manifest()["config_hash"]  # chained: another generate output is another filter identity
    chash = identity(stage_hash(cfg, "filter", "prompt", drop=drop), upstream)
    store.adopt(legacy.filter_identity(cfg, drop, upstream), chash)
    resumed = store.prepare("filter", chash, {"input_dir": str(src)}, overwrite)
    if resumed and store.is_complete() and Store(out, "rejected").is_complete():
        log.info("filter: %s already complete for this config", out)
        return out
    for sub in ("kept", "rejected"):  # an interrupted run is simply redone: filtering is cheap
        for p in (out / sub).glob("*.parquet"):
            p.unlink()
    t0 = time.perf_counter()
    records = list(source.records())
    bench = contamination_index(cfg)
    verify_stats: dict = {}
    log.info("filter: verifying %d traces from %s", len(records), src)
    probe = None
    if cfg.filter.student_probe is not None:
        from .probe import probe_pass_rates

        probe = functools.partial(probe_pass_rates, cfg, out=out)  # called with the surviving records
    kept, rejected, extra = decide(records, cfg, bench, verify_stats, probe)
    _write(Store(out, "kept"), kept)
    _write(Store(out, "rejected"), rejected)
    stats = summarize(records, kept, rejected, extra, verify_stats, time.perf_counter() - t0)
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2))
    write_filter_card(out, cfg, stats)
    store.update_manifest(complete=True, records=len(kept), rejected=len(rejected))
    log.info("%s", filter_summary(stats))
    return out


def _write(store: Store, rows: list[dict], per_shard: int = 5000) -> None:
    for i in range(0, max(len(rows), 1), per_shard):
        store.write_shard(rows[i:i + per_shard], "part", FILTER_SCHEMA)
