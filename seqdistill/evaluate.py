"""Stage 5: how much of the teacher's accuracy the student keeps, and at what size and speed.

Each model generates k samples per benchmark problem with the same backend, prompt and sampling, in this
run, on this hardware; the same verifier as `filter` scores them. Per-model generations are resumable
stores, so an interrupted eval continues where it stopped."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from . import legacy
from .answers import FORMAT_FORMS_EXCLUDED, answer_form
from .backends import backend_class
from .config import RecipeConfig, stage_hash
from .data import load_prompts
from .engine import Engine, sample_into
from .errors import ConfigError, DataError
from .labels import group_answers
from .metrics import gap_closed, paired_comparison, summarize_problems
from .models import count_params, load_options, load_tokenizer, resolve, set_threads
from .overlap import OverlapIndex
from .records import answer_text
from .report import eval_markdown, eval_plot
from .sampling import to_params
from .store import Store, atomic_write_parquet, atomic_write_text, identity, writer_scope
from .verify import CORRECT, check_many, extract_answer, get_task, witness_many

log = logging.getLogger(__name__)


def model_refs(cfg: RecipeConfig) -> list[tuple[str, object]]:
    """(label, ModelConfig-like) for each eval.models entry; stage names map to that stage's output."""
    from .config import ModelConfig

    out = []
    for name in cfg.eval.models:
        if name in ("teacher", "student"):
            out.append((name, cfg.need(name)))
            continue
        if name.startswith("teacher:"):  # one of several teachers (`teachers:`), as generate loaded it
            spec = {t: m for t, m, _, _ in cfg.teacher_specs()}.get(name.split(":", 1)[1])
            if spec is None:
                raise ConfigError(f"eval.models: {name!r} names no teacher in `teachers:`")
            out.append((name, spec))
            continue
        if name.startswith("sft:"):  # a student of one teacher's traces (sft.per_teacher)
            path = cfg.per_teacher_dir(name.split(":", 1)[1]) / "model"
            if not (path / "config.json").is_file():
                raise ConfigError(f"eval.models: {name!r} -> {path} has no trained model; set sft.per_teacher: "
                                  "true with `teachers:` and run sft")
            out.append((name, ModelConfig(path=str(path))))
            continue
        if name in ("sft", "kd", "final"):
            stage = name if name != "final" else ("kd" if cfg.kd is not None else "sft")
            path = cfg.stage_dir(stage) / "model"
            if not (path / "config.json").is_file():
                raise ConfigError(f"eval.models: {name!r} -> {path} has no trained model; run the {stage} stage")
            bad = Store(cfg.stage_dir(stage)).damaged()
            if bad:
                raise DataError(f"eval.models: {name!r} -> {cfg.stage_dir(stage) / bad[0][0]}: {bad[0][1]}; rerun "
                                f"the {stage} stage (it resumes from its last checkpoint and saves again)")
            out.append((name, ModelConfig(path=str(path))))
            continue
        if not Path(name).exists() and "/" not in name:
            raise ConfigError(f"eval.models: {name!r} is none of teacher / student / sft / kd / final, and not a "
                              "model folder or an org/name hub id")
        # the label names a folder under the eval dir: the model folder's real name, never '..' or '.'
        label = Path(name).resolve().name if Path(name).exists() else name.replace("/", "--")
        if label in ("", ".", ".."):
            raise ConfigError(f"eval.models: {name!r}: cannot name a model after this path")
        out.append((label, ModelConfig(path=name)))
    labels = [label for label, _ in out]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:  # two folders named alike would share one sample store and one row
        raise ConfigError(f"eval.models: two models would both be labelled {twice[0]!r} (same folder name); "
                          "rename or link one of them")
    return out


def fingerprint(path: str) -> str:
    """Changes when the weights change (a retrained sft/ model must not reuse old eval samples), and only then:
    not with the folder's path or mtimes, so a copied or moved run dir keeps its eval samples. Names, sizes and
    the first and last 4 MiB of each weight file (a retrained model differs there; reading all of a 15 GB model
    at every eval is not needed)."""
    p = Path(path)
    if not p.is_dir():
        return path
    h = hashlib.sha256()
    for f in sorted(p.glob("*.safetensors")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(4 << 20))
            fh.seek(max(0, size - (4 << 20)))
            h.update(fh.read(4 << 20))
    return h.hexdigest()[:16]


def param_options(cfg: RecipeConfig, label: str, mcfg) -> dict:
    """Load options for a model's config: its own (teacher, student, folders), or the student's for a trained
    student (sft, kd, final, sft:NAME: same architecture; a hub revision does not apply to a local folder)."""
    if label.split(":", 1)[0] in ("sft", "kd", "final") and cfg.student is not None:
        return {"trust_remote_code": cfg.student.trust_remote_code}
    return load_options(mcfg)


def score_model(store: Store, cfg: RecipeConfig) -> tuple[dict, list[dict]]:
    """Two scorings of the same samples, as the field reports them:
    accuracy (lenient: the answer the standard evaluators extract: boxed, else "the answer is", else the last
    number for numeric tasks) and strict (only the answer in the form the prompt asked for); format is the
    share of samples that answered in that form. Retention uses accuracy."""
    recs = list(store.records())
    items = [(answer_text(r), r["gold"], r["task"]) for r in recs]
    kw = {"workers": cfg.eval.num_workers, "timeout": cfg.eval.timeout_s, "sandbox": cfg.sandbox}
    strict = check_many(items, **kw)
    # lenient differs from strict only where its extraction does: verify just those a second time
    redo = [i for i, (text, _, task) in enumerate(items)
            if extract_answer(text, get_task(task), lenient=True) != extract_answer(text, get_task(task))]
    lenient = list(strict)
    for i, v in zip(redo, check_many([items[i] for i in redo], lenient=True, **kw)):
        lenient[i] = v
    groups, strict_groups = defaultdict(list), defaultdict(list)
    for r, v, s in zip(recs, lenient, strict):
        r.update(verdict=v.status, pred=v.pred, verify_reason=v.reason, strict_verdict=s.status,
                 answered_in_format=answer_form(answer_text(r), get_task(r["task"]))[0]
                 not in (None, *FORMAT_FORMS_EXCLUDED))
        groups[r["prompt_id"]].append({"correct": v.status == CORRECT, "pred": v.pred,
                                       "index": r["sample_index"]})
        strict_groups[r["prompt_id"]].append({"correct": s.status == CORRECT, "pred": s.pred,
                                              "index": r["sample_index"], "format": r["answered_in_format"]})
    for g in list(groups.values()) + list(strict_groups.values()):
        g.sort(key=lambda s: s["index"])
    k = cfg.eval.sampling.n
    # programs have no "same answer" to vote on (two programs are judged by their tests, not by each other):
    # maj@k is not reported for them rather than computed over program texts
    programs = any(get_task(r["task"]).executes for r in recs)
    if k > 1 and not programs:  # maj@k votes: answers grouped by the verifier (1/2 and 0.5 are one vote)
        for gs in (groups, strict_groups):
            pids = list(gs)
            task = recs[0]["task"] if recs else "math"
            ids = group_answers([([s["pred"] for s in gs[pid][:k]], task) for pid in pids],
                                workers=kw["workers"], timeout=kw["timeout"])
            for pid, votes in zip(pids, ids):
                for smp, vote in zip(gs[pid], votes):
                    smp["pred"] = vote
    try:
        metrics = summarize_problems(groups, sorted({1, k}))
        metrics["strict"] = summarize_problems(strict_groups, sorted({1, k}))
        if programs:
            for m in (metrics, metrics["strict"]):
                m.pop(f"maj@{k}", None)
    except ValueError as exc:
        raise DataError(f"eval.sampling.n: {exc} (an interrupted or mixed eval store?)") from None
    fmt = {pid: [{"correct": s["format"], "pred": None, "index": s["index"]} for s in g]
           for pid, g in strict_groups.items()}
    metrics["format"] = summarize_problems(fmt, [1])["pass@1"]
    metrics["witness"] = witness_agreement(recs, items, lenient, kw)
    metrics["accuracy"] = metrics["pass@1"]
    n = len(recs) or 1
    metrics.update(
        problems=len(groups), samples=len(recs),
        truncation_rate=sum(r["finish_reason"] == "length" for r in recs) / n,
        unclosed_think_rate=sum(not r["think_closed"] for r in recs) / n,
        unverifiable_rate=sum(r["verdict"] == "unverifiable" for r in recs) / n,
        no_answer_rate=sum(r["verify_reason"] == "no answer" for r in recs) / n,
        # cap-hit rate: share of samples whose thinking budget ran out (eval.sampling.thinking_budget)
        budget_forced_rate=sum(bool(r.get("budget_forced")) for r in recs) / n,
        mean_output_tokens=sum(r["completion_tokens"] for r in recs) / n)
    return metrics, recs


def speed_key(cfg: RecipeConfig, path: str) -> str:
    """Everything that changes a speed measurement: a timing taken with other settings, another model file or on
    another machine is measured again (the samples themselves are reused)."""
    import os
    import platform

    e = cfg.eval
    return identity(e.backend, e.batch_size, cfg.num_threads, e.vllm, e.speed_prompts, e.speed_repeats,
                    e.speed_tokens, e.speed_budget_s,
                    "fixed-length",  # the protocol: timings taken before it are measured again
                    e.sampling.model_dump(mode="json"), fingerprint(path),
                    None if backend_class(e.backend).local_weights else e.openai.model_dump(mode="json"),
                    platform.node(), platform.machine(), os.cpu_count())


def measure_speed(backend, prompts: list, params, repeats: int, label: str, tokens: int,
                  budget_s: float = float("inf")) -> dict:
    """Tokens/s of one model: a warm-up request first (the first pass of a fresh engine or process is slower:
    an identical copy of a model timed second looked 1.2-2x faster), then `repeats` timed passes over the same
    prompts as one batch, every sequence decoding exactly `tokens` tokens (end-of-sequence ignored). Without the
    fixed length a batch's time is its longest answer's: on GSM8K one 768-token loop among eight ~300-token
    answers made a merged copy of the 0.5B student time at 46 tok/s against the original's 73. Reports the
    median and the min-max spread, and whether every sequence really decoded `tokens` (`fixed_length`: a
    backend that cannot ignore the end of sequence, such as a generic OpenAI-compatible API, cannot). Passes stop
    once `budget_s` is spent (at least one): on an AVX2-only CPU three passes of the teacher took 8.5 minutes, a
    third of the main job's eval; each pass is the same work, so fewer passes only widen the spread."""
    import statistics

    from .sampling import sample

    if not prompts:
        return {"runs": [], "tokens_per_s": None, "tokens_per_s_spread": None, "s_per_problem": None}
    sample(backend, prompts[:1], replace(params, n=1, max_tokens=min(8, params.max_tokens), thinking_budget=None))
    timed = replace(params, max_tokens=min(tokens, params.max_tokens), ignore_eos=True, stop=[], thinking_budget=None)
    runs, fixed, start = [], True, time.perf_counter()
    for i in range(repeats):
        if runs and time.perf_counter() - start >= budget_s:
            log.info("eval %s: speed: %d of %d passes in the %.0f s budget (eval.speed_budget_s)", label, len(runs),
                     repeats, budget_s)
            break
        t0 = time.perf_counter()
        outs = sample(backend, prompts, timed)
        dt = time.perf_counter() - t0
        lengths = [c.completion_tokens for row in outs for c in row]
        fixed = fixed and all(n == timed.max_tokens for n in lengths)
        runs.append({"tokens": sum(lengths), "seconds": dt, "tokens_per_s": sum(lengths) / dt if dt else None})
        log.info("eval %s: speed pass %d/%d: %d tokens in %.1f s (%.1f tok/s)", label, i + 1, repeats,
                 sum(lengths), dt, sum(lengths) / dt if dt else float("nan"))
    tps = [r["tokens_per_s"] for r in runs if r["tokens_per_s"]]
    secs = [r["seconds"] / len(prompts) for r in runs]
    return {"runs": runs, "tokens_per_s": statistics.median(tps) if tps else None,
            "tokens_per_s_spread": [min(tps), max(tps)] if tps else None, "s_per_problem": statistics.median(secs),
            "tokens_per_sequence": timed.max_tokens, "fixed_length": fixed}


def witness_agreement(recs: list[dict], items: list[tuple], verdicts: list, kw: dict) -> dict | None:
    """Every sample scored a second time by an independent scorer the field uses (math-verify as lighteval's
    GSM8K metric runs it, verify.witness_check): the share of samples where it agrees with our accuracy verdict,
    its own accuracy, and the first disagreements (each a documented convention or a bug to fix). Programs
    (task: code) have no second scorer: the sandbox's verdict is the only one, so they are left out, and an eval
    of programs only gets None (a math scorer "agreeing" 65% with programs it cannot read would be a false number)."""
    scored = [i for i, (_, _, task) in enumerate(items) if not get_task(task).executes]
    if not scored:
        return None
    kw = {k: v for k, v in kw.items() if k != "sandbox"}  # the witness reads math, never runs programs
    seen = dict(zip(scored, witness_many([items[i] for i in scored], **kw)))
    ours = {i: verdicts[i].status == CORRECT for i in scored}
    theirs = {i: seen[i] == CORRECT for i in scored}
    differ = [i for i in scored if ours[i] != theirs[i]]
    n = len(scored)
    return {"scorer": "math-verify parse/verify as lighteval expr_gold_metric", "agreement": 1 - len(differ) / n,
            "accuracy": sum(theirs.values()) / n, "disagreements": len(differ), "samples": n,
            "examples": [{"prompt_id": recs[i]["prompt_id"], "sample_index": recs[i]["sample_index"],
                          "ours": verdicts[i].status, "witness": seen[i], "pred": verdicts[i].pred}
                         for i in differ[:20]]}


def train_questions(cfg: RecipeConfig) -> list[str]:
    """The prompts the students were trained on: filter's kept traces, which sft and kd read unless a recipe
    names another dataset (a prompt the filter removed, e.g. as contaminated, never reached a student); else the
    generate stage's records; else the recipe's data."""
    kept = cfg.stage_dir("filter")
    custom = any(s is not None and s.dataset for s in (cfg.sft, cfg.kd))
    if not custom and (Store(kept).manifest() or {}).get("complete"):
        return Store(kept, "kept").column("question")
    gen = cfg.stage_dir("generate")
    if (gen / "manifest.json").is_file():
        return Store(gen).column("question")
    try:
        return [it["question"] for it in load_prompts(cfg.data, where="data")]
    except DataError as exc:
        raise DataError(f"eval: cannot read the training prompts to check train/eval overlap: {exc}") from None


def overlap_report(cfg: RecipeConfig, items: list[dict]) -> dict:
    e = cfg.eval
    index = OverlapIndex(train_questions(cfg), e.overlap_ngram)
    hits = [it["id"] for it in items if index.hits(it["question"])]
    rep = {"items": len(items), "overlapping": len(hits), "fraction": len(hits) / len(items) if items else 0.0,
           "ngram": e.overlap_ngram, "examples": hits[:10]}
    if rep["fraction"] > e.max_train_overlap:
        raise DataError(f"eval.data: {len(hits)} of {len(items)} eval items ({rep['fraction']:.0%}) overlap the "
                        f"training prompts ({e.overlap_ngram}-gram or containment), above eval.max_train_overlap "
                        f"{e.max_train_overlap}; use a held-out set, or set eval.max_train_overlap: 1.0 if "
                        "scoring the training prompts is intended")
    return rep


@writer_scope
def sample_model(cfg: RecipeConfig, folder: Path, label: str, mcfg, path: str, items: list[dict], overwrite: bool,
                 batch_size: int | None = None) -> tuple[Store, dict]:
    """One model's eval samples in `folder` (resumed from disk), timed for speed unless `batch_size` is given
    (a repeat at another batch size: eval.repeat_models)."""
    e, bench = cfg.eval, cfg.eval.data
    base_hash = stage_hash(cfg, "prompt")
    sub = Store(folder)
    fp = fingerprint(path)
    chash = identity(base_hash, bench, e.sampling, e.backend, fp, *([batch_size] if batch_size else []))
    sub.adopt(legacy.eval_identity(cfg, bench, e.sampling, e.backend, fp), chash)
    resumed = sub.prepare("eval-generate", chash, {"model": path, "label": label}, overwrite)
    with sub.clean_on_refusal(resumed):  # a refusal before any sample leaves no manifest
        m = sub.manifest()
        skey = speed_key(cfg, path)
        need_speed = (e.speed_prompts > 0 and e.ray is None and batch_size is None
                      and (m.get("speed") or {}).get("key") != skey)
        if not m.get("complete") or need_speed:
            engine = Engine.of(e, cfg.num_threads, **({"batch_size": batch_size} if batch_size else {}))

            def timed(backend, prompts):  # while the engine is open
                if need_speed:
                    speed = measure_speed(backend, prompts[:e.speed_prompts], to_params(e.sampling),
                                          e.speed_repeats, label, e.speed_tokens, e.speed_budget_s)
                    sub.update_manifest(speed={"key": skey, **speed})

            # done: every prompt already on disk when only the timing is stale (nothing is regenerated)
            desc = f"eval {label}" + (f" (batch {batch_size})" if batch_size else "")
            sample_into(sub, items, engine, mcfg, cfg.prompt, to_params(e.sampling), task=bench.task, label=path,
                        tag="s0of1", desc=desc, seed=e.sampling.seed,
                        done={it["id"] for it in items} if m.get("complete") else None, then=timed)
            m = sub.update_manifest(complete=True)
    return sub, m


def repeat_noise(first: list[dict], second: list[dict]) -> dict:
    """How two evals of the same model on the same problems differ (only the engine's batching changed):
    completions that differ, verdicts that flip, and the accuracy difference that noise alone produced."""
    a = {(r["prompt_id"], r["sample_index"]): r for r in first}
    b = {(r["prompt_id"], r["sample_index"]): r for r in second}
    both = sorted(a.keys() & b.keys())
    flips = [k for k in both if (a[k]["verdict"] == CORRECT) != (b[k]["verdict"] == CORRECT)]
    gained = sum(b[k]["verdict"] == CORRECT for k in flips)
    return {"samples": len(both), "completions_differ": sum(a[k]["completion"] != b[k]["completion"] for k in both),
            "verdict_flips": len(flips), "flipped_to_correct": gained, "flipped_to_wrong": len(flips) - gained,
            "accuracy_diff": (2 * gained - len(flips)) / len(both) if both else None}


def run_eval(cfg: RecipeConfig, overwrite: bool = False) -> Path:
    e = cfg.eval
    set_threads(cfg.num_threads)
    if e.data is None:
        raise ConfigError("eval.data: required: without it eval would score the training prompts; set a held-out "
                          "benchmark (a disjoint split, e.g. synthetic split: test, or a test file)")
    bench = e.data
    get_task(bench.task)
    items = load_prompts(bench, where="eval.data")
    if any(it["answer"] is None for it in items):
        raise DataError(f"eval: benchmark {bench.label()} has problems without a gold answer")
    refs = model_refs(cfg)
    paths = {label: resolve(m.path, m.gguf_file) for label, m in refs}  # every model checked before any work
    if backend_class(e.backend).local_weights:  # an unreachable hub id fails here, before any folder is made
        for label, m in refs:
            if not Path(paths[label]).is_dir():
                load_tokenizer(paths[label], **load_options(m))
    overlap = overlap_report(cfg, items)
    out = cfg.stage_dir("eval")
    Store(out).lock_writer()  # eval.json / report.md: one eval at a time per eval dir
    base_hash = stage_hash(cfg, "prompt")
    results, lengths, per_problem, samples = {}, {}, {}, {}
    for label, mcfg in refs:
        path = paths[label]
        sub, m = sample_model(cfg, out / label, label, mcfg, path, items, overwrite)
        metrics, recs = score_model(sub, cfg)
        speed = m.get("speed") or {}
        metrics.update(model=path, params=count_params(path, param_options(cfg, label, mcfg)),
                       tokens_per_s=speed.get("tokens_per_s"),
                       tokens_per_s_spread=speed.get("tokens_per_s_spread"),
                       latency_per_problem_s=speed.get("s_per_problem"), speed_runs=len(speed.get("runs", [])),
                       speed_tokens_per_sequence=speed.get("tokens_per_sequence"),
                       speed_fixed_length=speed.get("fixed_length", False))
        _write_samples(out / label / "samples.parquet", recs)
        results[label] = metrics
        lengths[label] = [r["completion_tokens"] for r in recs]
        per_problem[label] = problem_scores(recs)
        samples[label] = recs
        log.info("eval %s: accuracy %.3f, strict %.3f, format %.3f", label, metrics["accuracy"]["mean"],
                 metrics["strict"]["pass@1"]["mean"], metrics["format"]["mean"])
    noise = {}
    for label, mcfg in refs:  # the same model again at another batch size: how much batching alone moves it
        if label in e.repeat_models:
            sub, _ = sample_model(cfg, out / f"{label}@batch{e.repeat_batch_size}", label, mcfg, paths[label], items,
                                  overwrite, batch_size=e.repeat_batch_size)
            again = score_model(sub, cfg)[1]
            _write_samples(sub.root / "samples.parquet", again)  # the repeat's verdicts, checkable beside the first
            noise[label] = {"batch_size": e.batch_size, "repeat_batch_size": e.repeat_batch_size,
                            **repeat_noise(samples[label], again)}
            log.info("eval %s: repeated at batch %d: %d of %d completions differ, %d verdicts flip", label,
                     e.repeat_batch_size, noise[label]["completions_differ"], noise[label]["samples"],
                     noise[label]["verdict_flips"])
    summary = distillation_summary(results)
    report = {"benchmark": bench.label(), "task": bench.task, "k": e.sampling.n, "train_overlap": overlap,
              "sampling": e.sampling.model_dump(), "backend": e.backend, "models": results, "summary": summary,
              "paired": paired_table(per_problem), "gap_closed": gap_table(per_problem), "repeat_noise": noise,
              "created": time.time()}
    per_teacher = any(x.startswith("sft:") for x in results)
    students = [m for m in results if m.startswith("sft:") or (m == "sft" and per_teacher)]
    if students:  # which teacher makes the better student: ranked by the student's accuracy, not the teacher's
        report["teacher_ranking"] = sorted(
            ({"student": m, "teacher": m.split(":", 1)[1] if ":" in m else "(all teachers)",
              "accuracy": results[m]["accuracy"]["mean"], "ci95": results[m]["accuracy"]["ci95"]} for m in students),
            key=lambda row: -row["accuracy"])
    atomic_write_text(out / "eval.json", json.dumps(report, indent=2))
    table = eval_markdown(report)

    atomic_write_text(out / "report.md", table + "\n")
    png = eval_plot(report, lengths, out / "report.png")
    log.info("eval: wrote %s%s", out / "report.md", f" and {png}" if png else "")
    Store(out).update_manifest(stage="eval", complete=True, config_hash=base_hash)
    return out


def _write_samples(path: Path, recs: list[dict]) -> None:
    keep = ["prompt_id", "sample_index", "question", "gold", "completion", "finish_reason", "completion_tokens",
            "verdict", "pred", "verify_reason", "strict_verdict", "answered_in_format"]
    atomic_write_parquet(path, pa.Table.from_pylist([{k: r.get(k) for k in keep} for r in recs]))


def problem_scores(recs: list[dict]) -> dict[str, float]:
    """Problem id -> share of its samples judged correct (lenient accuracy, as the headline number)."""
    hits = defaultdict(list)
    for r in recs:
        hits[r["prompt_id"]].append(r["verdict"] == CORRECT)
    return {pid: sum(v) / len(v) for pid, v in hits.items()}


def reference_models(labels) -> list[str]:
    """What every other model is compared against on the same problems: the student before training, the
    teacher (`teacher`, else the first `teacher:NAME`), and the SFT arm (so a KD or on-policy arm is paired
    with the SFT student it was meant to improve on)."""
    teacher = "teacher" if "teacher" in labels else next((m for m in labels if m.startswith("teacher:")), None)
    return [m for m in ("student", teacher, "sft") if m in labels]


def paired_table(per_problem: dict[str, dict[str, float]]) -> list[dict]:
    """Each model against each reference, on the problems both scored: difference, paired bootstrap CI, McNemar.
    Against the student before: every model but the teachers; against the SFT arm: only the other arms."""
    rows = []
    for ref in reference_models(per_problem):
        for label, scores in per_problem.items():
            arm_ref = ref in ("student", "sft")  # references that teachers are not compared against
            if label == ref or (arm_ref and label.startswith("teacher")) or (ref == "sft" and label == "student"):
                continue
            rows.append({"model": label, "against": ref, **paired_comparison(per_problem[ref], scores)})
    return rows


def gap_table(per_problem: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Every trained model's share of the teacher gap closed, against the student before (metrics.gap_closed);
    empty without both a teacher and the student before."""
    refs = reference_models(per_problem)
    teacher = next((m for m in refs if m.startswith("teacher")), None)
    if teacher is None or "student" not in per_problem:
        return {}
    return {label: gap_closed(per_problem["student"], scores, per_problem[teacher])
            for label, scores in per_problem.items() if label != "student" and not label.startswith("teacher")}


def distillation_summary(results: dict) -> dict:
    """Retention, size ratio and speed-up of every model against the teacher: `teacher`, else the first
    `teacher:NAME` evaluated (with several teachers)."""
    ref = "teacher" if "teacher" in results else next((m for m in results if m.startswith("teacher:")), None)
    if ref is None:
        return {}
    t = results[ref]
    out = {}
    for label, r in results.items():
        if label == ref:
            continue
        acc_t = t["accuracy"]["mean"]
        # speeds compare only when both models decoded the same fixed lengths: otherwise a ratio measures
        # answer lengths (a batch waits for its longest answer), so none is reported
        same_work = bool(r.get("speed_fixed_length") and t.get("speed_fixed_length")
                         and r.get("speed_tokens_per_sequence") == t.get("speed_tokens_per_sequence"))
        if not same_work:
            r = {**r, "tokens_per_s": None, "tokens_per_s_spread": None, "latency_per_problem_s": None}
        out[label] = {
            "retention": r["accuracy"]["mean"] / acc_t if acc_t else None,  # lenient accuracy, as the field
            "size_ratio": r["params"] / t["params"] if t["params"] else None,
            "speedup": (r["tokens_per_s"] / t["tokens_per_s"]) if r["tokens_per_s"] and t["tokens_per_s"] else None,
            # the widest ratio the timed passes allow: slowest of this model over fastest of the teacher, and back
            "speedup_spread": ([r["tokens_per_s_spread"][0] / t["tokens_per_s_spread"][1],
                                r["tokens_per_s_spread"][1] / t["tokens_per_s_spread"][0]]
                               if r.get("tokens_per_s_spread") and t.get("tokens_per_s_spread") else None),
            "latency_ratio": (r["latency_per_problem_s"] / t["latency_per_problem_s"]
                              if r["latency_per_problem_s"] and t["latency_per_problem_s"] else None),
        }
    return out
