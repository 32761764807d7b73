"""Answer checking: extract the final answer, compare it with the gold answer, return a Verdict.

Status is correct / wrong / unverifiable, never a bare bool. Plain numbers take a fast path (no sympy);
everything else goes through math-verify. math-verify's own timeouts use signal.alarm, which raises outside
the main thread, so `check_many` runs the slow path in worker processes with a timeout of our own and
kills a worker that overruns it: one pathological expression can neither hang nor kill the run."""

from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import os
import re
import signal
import time
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import wait

from .answers import (
    MAX_ANSWER_CHARS,
    TASKS,
    Task,
    answer_form,
    canonical_symbols,
    choice_letter,
    choice_letters,
    extract_answer,
    gold_answer,
    is_choice,
    light_normalize,
    list_numbers,
    numeric_form,
    parse_number,
    ratio_terms,
    rejects_a_value,
    scale_of,
)
from .think import split_reasoning

CORRECT, WRONG, UNVERIFIABLE = "correct", "wrong", "unverifiable"


@dataclass(frozen=True)
class Verdict:
    status: str
    pred: str | None
    gold: str | None
    reason: str  # the path or why: "fast-path", "math-verify", "no answer", "timeout", "answer too long", ...
    detail: str = ""  # what the decision compared, e.g. "number 18 == 18" (shown by `seqdistill check`)


def as_task(task: str | Task) -> Task:
    return get_task(task) if isinstance(task, str) else task


def get_task(name: str) -> Task:
    if name not in TASKS:
        from .errors import ConfigError

        raise ConfigError(f"data.task: unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


def as_number(ans: str, task: str | Task = "arithmetic") -> Fraction | None:
    """The exact value of a plain-number answer under the task's conventions; None if not one."""
    t = as_task(task)
    if len(ans) > MAX_ANSWER_CHARS:
        return None
    f = numeric_form(ans, t)
    if f.is_list or f.words:
        return None
    return parse_number(f.text, t.decimal_comma)


def _clean(s: str | None, limit: int = 300) -> str | None:
    """Printable and storable: lone surrogates replaced, very long text cut (the verdict says why)."""
    if s is None:
        return None
    s = s if len(s) <= limit else s[:limit] + "..."
    return s.encode("utf-8", "replace").decode("utf-8")


def _show(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator) if abs(x.numerator) < 10 ** 30 else f"~{float(x):.6g}"
    return f"{x.numerator}/{x.denominator}" if x.denominator < 10 ** 30 else f"~{float(x):.6g}"


def fast_check(pred: str, gold: str, task: Task) -> tuple[str, str] | None:
    """(status, detail) when the answer is certain by the conventions in answers.py; None: ask math-verify.
    Sound by construction: 'correct' only on equal exact values (or identical text, or a convention listed in
    answers.py); 'wrong' only where the values certainly differ under those conventions."""
    if task.compare == "math" and is_choice(gold):
        g, p = choice_letter(gold), choice_letter(pred)
        if p is None:
            return None
        named = choice_letters(pred)
        if len(named) > 1:
            return WRONG, f"names several choices {''.join(sorted(named))}; one is asked for"
        return (CORRECT if p == g else WRONG), f"choice {p} vs {g}"
    pr, gr = ratio_terms(pred, task), ratio_terms(gold, task)
    if pr or gr:
        return _ratio_verdict(pr, gr)
    pv, gv = _assigned(pred), _assigned(gold)
    if pv and gv and pv != gv:
        return WRONG, f"assigns {pv}, the gold assigns {gv}"
    pf, gf = numeric_form(pred, task), numeric_form(gold, task)
    p = None if pf.is_list or pf.words else parse_number(pf.text, task.decimal_comma)
    g = None if gf.is_list or gf.words else parse_number(gf.text, task.decimal_comma)
    if g is not None and p is None and pf.is_list and list_numbers(pred, task):
        return WRONG, f"a list of numbers ({pred[:40]!r}) against one number {_show(g)}"
    scaled = _scale_verdict(pf, gf, task)
    if scaled is not None:
        return scaled
    if p is None and pf.words and pf.words != gf.words and not pf.is_list \
            and parse_number(pf.text, task.decimal_comma) is not None:
        # "5 thousand", "3 dozen", "5 or more", "7 squared": math-verify reads some of these as the bare number
        return WRONG, f"{pf.words!r} after the number is no unit: it changes or qualifies the value"
    if p is not None and g is not None:
        if pf.unit and gf.unit and pf.unit != gf.unit:
            return WRONG, f"units differ: {pf.unit} vs {gf.unit}"
        if "degree" in (pf.unit, gf.unit) and (pf.percent or gf.percent):
            return WRONG, "degrees against a percentage"
        if p == g and pf.percent == gf.percent:
            return CORRECT, f"number {_show(p)} == {_show(g)}"
        if pf.percent != gf.percent:
            return _percent_verdict(p, pf.percent, g)
        return WRONG, f"number {_show(p)} != {_show(g)}"
    if light_normalize(pred) == light_normalize(gold):
        return CORRECT, f"same text {light_normalize(gold)!r}"
    return None


def _ratio_verdict(pr: list[Fraction] | None, gr: list[Fraction] | None) -> tuple[str, str]:
    """Ratios are ordered: the same terms in the same order are correct, 2:1 against 1:2 is wrong. Equivalent
    but not equal (2:4 against 1:2: the question may ask for simplest form; 2:30 may be a time) and a ratio
    against a single value (1:2 against 1/2: read as a division, 2:1 would answer 2) are not guessed."""
    if pr and gr:
        shown = f"{':'.join(map(_show, pr))} vs {':'.join(map(_show, gr))}"
        if pr == gr:
            return CORRECT, f"ratio {shown}"
        if len(pr) == len(gr) and all(b != 0 for b in gr) and len({a / b for a, b in zip(pr, gr)}) == 1:
            return UNVERIFIABLE, f"ratio {shown}: equivalent, not equal (simplest form may be asked)"
        return WRONG, f"ratio {shown}"
    return UNVERIFIABLE, "a ratio against a single value: not compared (a ratio is not a division)"


def _scale_verdict(pf, gf, task: Task) -> tuple[str, str] | None:
    """A scale word on either side ("3 million", "2 dozen"): correct when the scaled values are equal (3 million
    = 3000000); when the numbers are equal but only one side is scaled (3 million against 3), the question may
    count in millions: not decided here (the question's text is not read), unverifiable; otherwise wrong."""
    ps, gs = scale_of(pf.words), scale_of(gf.words)
    if not (ps or gs) or pf.is_list or gf.is_list:
        return None
    (pk, p_rest), (gk, g_rest) = ps or (1, pf.words), gs or (1, gf.words)
    p, g = parse_number(pf.text, task.decimal_comma), parse_number(gf.text, task.decimal_comma)
    if p is None or g is None or (p_rest and g_rest and p_rest != g_rest):
        return None
    if p * pk == g * gk and pf.percent == gf.percent:
        return CORRECT, f"{_show(p)} x {pk} == {_show(g)} x {gk}"
    if p == g and pk != gk:
        return UNVERIFIABLE, (f"{_show(p)} with scale {pk} against {gk}: the question may count in that scale "
                              "(its text is not read here)")
    return WRONG, f"{_show(p * pk)} != {_show(g * gk)}"


_ASSIGNED = re.compile(r"^\s*\$?\s*([A-Za-z])\s*=\s*(?=[^=])")


def _assigned(ans: str) -> str | None:
    """The one-letter variable an answer assigns ("b = 4" -> "b"): an answer assigning another variable than the
    gold's is wrong; against a bare-value gold the assignment is dropped (math-verify compares the right side)."""
    m = _ASSIGNED.match(ans)
    return m.group(1) if m else None


def _percent_verdict(p: Fraction, p_pct: bool, g: Fraction) -> tuple[str, str]:
    """One side written with %, the other not. Correct when the values are equal (50% = 0.5), or by the field's
    convention that a percentage question's gold is the number of percent (gold 50 answered "50%"), which
    applies only when that number is at least 1 (or 0): a gold below 1 is a fraction, so "0.5%" does not answer
    gold 0.5. Everything else is wrong."""
    pct, other = (p, g) if p_pct else (g, p)
    if pct / 100 == other:
        return CORRECT, f"{_show(pct)}% == {_show(other)}"
    if pct == other and (abs(other) >= 1 or other == 0):
        return CORRECT, f"{_show(pct)}% answers {_show(other)} (percent convention: a gold of at least 1)"
    return WRONG, f"{_show(pct)}% != {_show(other)}"


def _quiet_math_verify():
    for name in ("math_verify", "math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)


_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")


def for_math_verify(ans: str) -> str:
    """The answer as math-verify's parser gets it. An answer already in math mode ($, \\(, \\[, \\boxed) goes as it
    is: wrapping it again changes what math-verify extracts. Otherwise it is wrapped in $...$ so its LaTeX
    extractor reads it (bare `\\frac12`, `(1, 2]` or `x^2+1` are otherwise not, or wrongly, read). Unicode
    superscripts become ^{..} (2³ -> 2^{3}), which the LaTeX parser would drop. Both rewrites keep the value
    (tests/test_verify.py)."""
    s = _SUPERSCRIPT_RUN.sub(lambda m: "^{" + m.group(0).translate(_SUPERSCRIPT) + "}", ans)
    if "$" in s.replace("\\$", "") or any(t in s for t in ("\\(", "\\[", "\\boxed")):
        return s
    return f"${s}$"


def slow_check(pred: str, gold: str) -> tuple[str, str]:
    """math-verify on two answers (no timeouts inside: the caller bounds the time)."""
    from math_verify import parse, verify

    _quiet_math_verify()
    g = parse(for_math_verify(gold), parsing_timeout=None)
    if not g:
        return UNVERIFIABLE, "gold not parseable"
    p = parse(for_math_verify(pred), parsing_timeout=None)
    if not p:
        return WRONG, "prediction not parseable"
    return (CORRECT if verify(g, p, timeout_seconds=None) else WRONG), "math-verify"


def witness_check(text: str, gold: str) -> tuple[str, str]:
    """An outside witness: math-verify as lighteval's GSM8K metric runs it (expr_gold_metric), on the whole
    completion after </think>: gold read with ExprExtractionConfig, the prediction with LatexExtractionConfig
    (boxed first) then ExprExtractionConfig, first match. None of our extraction or conventions is involved."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    from .think import split_reasoning

    _quiet_math_verify()
    g = parse(gold, extraction_config=[ExprExtractionConfig()], parsing_timeout=None)
    if not g:
        return UNVERIFIABLE, "witness: gold not parseable"
    _, answer, closed = split_reasoning(text)
    p = parse(answer if closed else "", extraction_config=[LatexExtractionConfig(boxed_match_priority=0),
                                                            ExprExtractionConfig()],
              fallback_mode="first_match", parsing_timeout=None)
    return (CORRECT if p and verify(g, p, timeout_seconds=None) else WRONG), "witness"


def _prepare(pred_text: str, gold: str | None, task: str | Task, lenient: bool = False):
    """A finished Verdict, or (pred, gold) for math-verify. Nothing here is unbounded on any input."""
    t = as_task(task)
    g = gold_answer(gold, t)
    if g is None:
        return Verdict(UNVERIFIABLE, None, None, "no gold answer"), None
    form, pred = answer_form(pred_text or "", t, lenient)
    if pred is not None and form in ("answer_is", "final_latex", "last_number") \
            and rejects_a_value(split_reasoning(pred_text)[1]):
        return Verdict(UNVERIFIABLE, _clean(pred), _clean(g), "two values",
                       "the closing sentence names a value and rejects another: which it asserts is not read"), None
    if pred is None:
        return Verdict(WRONG, None, _clean(g), "no code block" if t.executes else "no answer"), None
    if t.executes:
        return None, (pred, g)  # run in the sandbox by check_many
    if len(pred) > MAX_ANSWER_CHARS or len(g) > MAX_ANSWER_CHARS:
        return Verdict(UNVERIFIABLE, _clean(pred), _clean(g), "answer too long",
                       f"over {MAX_ANSWER_CHARS} characters"), None
    pred, g = canonical_symbols(pred), canonical_symbols(g)
    if t.int_range:
        gv = as_number(g, t)
        if gv is None or gv.denominator != 1 or not t.int_range[0] <= gv <= t.int_range[1]:
            return Verdict(UNVERIFIABLE, _clean(pred), _clean(g), "gold out of range",
                           f"{t.compare} task expects an integer gold in {t.int_range}"), None
    fast = fast_check(pred, g, t)
    if fast is not None:
        return Verdict(fast[0], _clean(pred), _clean(g), "fast-path", fast[1]), None
    return None, (pred, g)


def check(pred_text: str, gold: str | None, task: str | Task, lenient: bool = False,
          timeout: float = 5.0) -> Verdict:
    """Check one completion; the math-verify part runs in a killable worker, bounded by `timeout`."""
    return check_many([(pred_text, gold, task)], workers=1, timeout=timeout, lenient=lenient)[0]


# ------------------------------------------------------------------ bounded-time pool
class _Timeout(BaseException):
    """BaseException so that math-verify's own `except Exception` cannot swallow it and answer 'wrong'."""


def _alarm(signum, frame):
    raise _Timeout()


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when its parent dies (a kill -9 of filter leaves no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(conn, soft_timeout: float, parent: int):
    # a worker process runs in its own main thread, so a timer signal works here as a first line;
    # the parent kills the process if a C-level computation ignores it
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        return
    signal.signal(signal.SIGALRM, _alarm)
    _quiet_math_verify()
    while True:
        job = conn.recv()
        if job is None:
            return
        for idx, pred, gold, *kind in job:
            signal.setitimer(signal.ITIMER_REAL, soft_timeout)
            try:
                job_fn = witness_check if kind and kind[0] == "witness" else slow_check  # looked up at call time
                status, reason = job_fn(pred, gold)
            except _Timeout:
                status, reason = UNVERIFIABLE, "timeout"
            except Exception as exc:  # math-verify/sympy bugs on odd text must not end the run
                status, reason = UNVERIFIABLE, f"checker error: {type(exc).__name__}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            conn.send((idx, status, reason))


class _Pool:
    def __init__(self, workers: int, timeout: float):
        import math_verify  # noqa: F401  (imported once here, so forked workers start warm)

        self.ctx = mp.get_context("fork" if hasattr(signal, "SIGALRM") else "spawn")
        self.timeout = timeout
        self.procs = [self._start() for _ in range(workers)]

    def _start(self):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker, args=(child, self.timeout, os.getpid()), daemon=True)
        p.start()
        child.close()
        return {"proc": p, "conn": parent, "job": [], "since": 0.0}

    def run(self, jobs: list[tuple[int, str, str]], chunk: int = 16) -> dict[int, tuple[str, str]]:
        queue = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
        results: dict[int, tuple[str, str]] = {}
        while queue or any(w["job"] for w in self.procs):
            for w in self.procs:
                if not w["job"] and queue:
                    w["job"] = list(queue.pop())
                    w["since"] = time.monotonic()
                    w["conn"].send(w["job"])
            busy = [w["conn"] for w in self.procs if w["job"]]
            for conn in wait(busy, timeout=0.2):
                w = next(x for x in self.procs if x["conn"] is conn)
                try:
                    idx, status, reason = conn.recv()
                except EOFError:  # the worker died (e.g. out of memory): blame the item in flight
                    idx, status, reason = w["job"][0][0], UNVERIFIABLE, "checker crashed"
                    self._replace(w, results, status, reason)
                    continue
                results[idx] = (status, reason)
                w["job"].pop(0)
                w["since"] = time.monotonic()
            hard = 2 * self.timeout + 1.0
            for w in self.procs:
                if w["job"] and time.monotonic() - w["since"] > hard:
                    self._replace(w, results, UNVERIFIABLE, "timeout")
        return results

    def _replace(self, w, results, status, reason):
        """Kill a stuck worker; its in-flight item gets the verdict, the rest of its chunk is retried."""
        idx = w["job"][0][0]
        results[idx] = (status, reason)
        rest = w["job"][1:]
        w["proc"].kill()
        w["proc"].join()
        fresh = self._start()
        w.update(fresh)
        if rest:
            w["job"] = rest
            w["since"] = time.monotonic()
            w["conn"].send(rest)

    def alive(self) -> bool:
        return all(w["proc"].is_alive() and not w["job"] for w in self.procs)

    def close(self):
        for w in self.procs:
            try:
                w["conn"].send(None)
            except (BrokenPipeError, OSError):
                pass
            w["proc"].join(timeout=1)
            if w["proc"].is_alive():
                w["proc"].kill()


_POOLS: dict[tuple[int, float, int], _Pool] = {}


def _shared_pool(workers: int, timeout: float) -> _Pool:
    """One pool per (workers, timeout) for the life of the process, so `check` in a loop (the CLI, the probe)
    does not fork workers per call. Keyed by pid too: a forked child never uses its parent's pipes."""
    key = (workers, timeout, os.getpid())
    pool = _POOLS.get(key)
    if pool is None or not pool.alive():
        if pool is not None:
            pool.close()
        pool = _POOLS[key] = _Pool(workers, timeout)
    return pool


def _drop_pool(workers: int, timeout: float) -> None:
    pool = _POOLS.pop((workers, timeout, os.getpid()), None)
    if pool is not None:
        pool.close()


@atexit.register
def _close_pools() -> None:
    for key in [k for k in _POOLS if k[2] == os.getpid()]:
        _POOLS.pop(key).close()


def check_many(items: list[tuple[str, str | None, str]], workers: int = 2, timeout: float = 5.0,
               stats: dict | None = None, lenient: bool = False, sandbox=None) -> list[Verdict]:
    """Check (pred_text, gold, task) triples. Fast path here, the rest in killable worker processes; programs in
    the sandbox with `sandbox`'s limits (a SandboxConfig; None: its defaults)."""
    verdicts: list[Verdict | None] = [None] * len(items)
    slow: list[tuple[int, str, str]] = []
    programs: list[tuple[int, str, str]] = []
    for i, (text, gold, task) in enumerate(items):
        done, pending = _prepare(text, gold, task, lenient)
        if done:
            verdicts[i] = done
        elif as_task(task).executes:
            programs.append((i, *pending))
        else:
            slow.append((i, *pending))
    if programs:
        from .config import SandboxConfig
        from .errors import ConfigError
        from .sandbox import SandboxPool, isolation_mode

        sb = sandbox or SandboxConfig()
        if isolation_mode() == "none" and not sb.allow_unisolated:
            raise ConfigError("sandbox.allow_unisolated: programs would run unisolated here (not root, and this "
                              "kernel refuses unprivileged user namespaces): they could read your files and "
                              "environment, reach the network and signal your processes. Run as root, enable user "
                              "namespaces, or set sandbox.allow_unisolated: true to accept that")
        runs = SandboxPool(workers, sb.limits(), unisolated_ok=sb.allow_unisolated).run_many(
            [(prog, tests) for _, prog, tests in programs])
        for (i, prog, tests), run in zip(programs, runs):
            verdicts[i] = Verdict(CORRECT if run.passed else WRONG, _clean(prog, 2000), _clean(tests, 300),
                                  run.reason, f"{run.detail} ({run.seconds:.2f} s"
                                  + ("" if run.network_isolated else "; network not isolated") + ")")
    if slow:
        pool = _shared_pool(workers, timeout)
        try:
            out = pool.run(slow)
        except BaseException:  # interrupted mid-run: its workers may hold half a job; start afresh next time
            _drop_pool(workers, timeout)
            raise
        for i, pred, gold in slow:
            status, reason = out[i]
            verdicts[i] = Verdict(status, _clean(pred), _clean(gold), reason,
                                  "math-verify (sympy) compared the two" if reason == "math-verify" else "")
    if stats is not None:
        stats["fast_path"] = stats.get("fast_path", 0) + len(items) - len(slow) - len(programs)
        stats["slow_path"] = stats.get("slow_path", 0) + len(slow)
        stats["executed"] = stats.get("executed", 0) + len(programs)
    return verdicts  # type: ignore[return-value]


def witness_many(items: list[tuple[str, str | None, str]], workers: int = 2, timeout: float = 5.0) -> list[str]:
    """witness_check on (completion, gold, task) triples in the killable worker pool (untrusted text never
    reaches sympy in this process); the gold is the task's gold answer (GSM8K: the number after ####)."""
    jobs, out = [], [UNVERIFIABLE] * len(items)
    for i, (text, gold, task) in enumerate(items):
        if as_task(task).executes:
            continue  # programs have no second scorer here: the sandbox's verdict is the only one
        g = gold_answer(gold, get_task(task))
        if g is not None and len(text or "") <= 200_000:
            jobs.append((i, text or "", g, "witness"))
    if jobs:
        for i, (status, _) in _shared_pool(workers, timeout).run(jobs).items():
            out[i] = status
    return out


def explain(pred_text: str, gold: str | None, task: str, timeout: float = 5.0) -> dict:
    """Everything `seqdistill check` shows: extractions, normalised forms, path and verdict."""
    t = get_task(task)
    if t.executes:
        v = check(pred_text, gold, t, timeout=timeout)
        return {"task": task, "program": v.pred, "tests": v.gold, "verdict": v.status, "reason": v.reason,
                "detail": v.detail}
    v = check(pred_text, gold, t, timeout=timeout)
    lenient = check(pred_text, gold, t, lenient=True, timeout=timeout)
    g = gold_answer(gold, t)

    def forms(ans):
        if ans is None or len(ans) > MAX_ANSWER_CHARS:
            return None
        f = numeric_form(ans, t)
        value = None if f.is_list or f.words else parse_number(f.text, t.decimal_comma)
        return {"text": light_normalize(ans), "number": None if value is None else _show(value),
                "percent": f.percent, "unit": f.unit, "words_after_number": f.words, "list": f.is_list,
                "choice": choice_letter(ans) if is_choice(g or "") else None}

    return {"task": task, "strict_answer": v.pred, "lenient_answer": lenient.pred, "gold": v.gold or _clean(g),
            "pred_normalized": forms(extract_answer(pred_text, t)), "gold_normalized": forms(g),
            "path": v.reason, "detail": v.detail, "verdict": v.status, "lenient_verdict": lenient.status}
