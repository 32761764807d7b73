"""Answer checking: extract the final answer, compare it with the gold answer, return a Verdict.

Status is correct / wrong / unverifiable, never a bare bool. Plain numbers take a fast path (no sympy);
everything else goes through math-verify. math-verify's own timeouts use signal.alarm, which raises outside
the main thread, so `check_many` runs the slow path in worker processes with a timeout of our own and
kills a worker that overruns it: one pathological expression can neither hang nor kill the run."""

from __future__ import annotations

import logging
import multiprocessing as mp
import re
import signal
import time
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing.connection import wait

from .chat import split_reasoning

CORRECT, WRONG, UNVERIFIABLE = "correct", "wrong", "unverifiable"


@dataclass(frozen=True)
class Verdict:
    status: str
    pred: str | None
    gold: str | None
    reason: str  # "fast-path", "math-verify", "no answer", "timeout", ...


# ------------------------------------------------------------------ task registry (shared by filter and eval)
@dataclass(frozen=True)
class Task:
    gold_form: str  # "raw": the field is the answer; "gsm8k": text ending in '#### N'; "boxed": a solution
    pred_forms: tuple[str, ...]  # tried in order on the answer part of the completion
    compare: str  # "number" (exact rational), "integer" (AIME: 025 == 25), "math" (math-verify)
    int_range: tuple[int, int] | None = None


TASKS: dict[str, Task] = {
    "gsm8k": Task("gsm8k", ("boxed", "hash", "answer_is"), "number"),
    "math": Task("raw", ("boxed",), "math"),
    "aime": Task("raw", ("boxed", "answer_is"), "integer", (0, 999)),
    "amc": Task("raw", ("boxed", "answer_is"), "math"),
    "arithmetic": Task("raw", ("boxed", "answer_is"), "number"),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        from .errors import ConfigError

        raise ConfigError(f"data.task: unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


# ------------------------------------------------------------------ extraction
def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} / \\fbox{...}, with nested braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0 or text[start:i].strip() not in ("\\boxed", "\\fbox"):
        m = re.match(r"\\boxed ([^\s$]+)", text[start:])  # "\boxed 5"
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j].strip()
    return None  # unbalanced: a truncated box is no answer


_HASH = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*\$?([^\n$]+?)\$?\s*(?:\.\s*)?$",
                        re.IGNORECASE | re.MULTILINE)


def extract_answer(text: str, task: str | Task) -> str | None:
    """The final answer, taken only from the part after </think>; an unclosed <think> has none."""
    t = TASKS[task] if isinstance(task, str) else task
    _, answer_part, closed = split_reasoning(text)
    if not closed or not answer_part:
        return None
    for form in t.pred_forms:
        if form == "boxed":
            got = last_boxed(answer_part)
        elif form == "hash":
            m = _HASH.findall(answer_part)
            got = m[-1].strip() if m else None
        else:
            m = _ANSWER_IS.findall(answer_part)
            got = m[-1].strip() if m else None
        if got:
            return got
    return None


def gold_answer(gold: str | None, task: Task) -> str | None:
    if gold is None or str(gold).strip() == "":
        return None
    gold = str(gold)
    if task.gold_form == "gsm8k":
        m = _HASH.findall(gold)
        return m[-1].strip() if m else gold.strip()
    if task.gold_form == "boxed":
        return last_boxed(gold)
    return gold.strip()


# ------------------------------------------------------------------ comparison
_STRIP = re.compile(r"\\[,;!: ]|\\text\{\s*\}|\s+")
_NUM = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$", re.IGNORECASE)


def normalize(ans: str) -> str:
    s = ans.strip().strip(".").replace("\\!", "").replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\left|\\right", "", s)
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "").replace("%", "")
    s = _STRIP.sub("", s)
    return s


def as_number(ans: str) -> Fraction | None:
    """Plain numbers only: '1,000', '$5', '12.0', '50%', '-3' -> exact Fraction; anything else None."""
    s = normalize(ans).replace(",", "")
    if not _NUM.match(s):
        return None
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def fast_check(pred: str, gold: str, task: Task) -> str | None:
    """Decide without sympy when possible; None means 'ask math-verify'."""
    if task.compare == "integer":
        p, g = as_number(pred), as_number(gold)
        if g is None or g.denominator != 1:
            return None
        if p is None:
            return None if task.int_range is None else WRONG
        return CORRECT if p == g else WRONG
    p, g = as_number(pred), as_number(gold)
    if p is not None and g is not None:
        return CORRECT if p == g else WRONG
    if normalize(pred) == normalize(gold):
        return CORRECT
    if task.compare == "number" and g is not None:
        return WRONG  # a numeric task whose prediction is not a number
    return None


def _quiet_math_verify():
    for name in ("math_verify", "math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)


def slow_check(pred: str, gold: str) -> tuple[str, str]:
    """math-verify on two answers (no timeouts inside: the caller bounds the time)."""
    from math_verify import parse, verify

    _quiet_math_verify()
    g = parse(f"${gold}$", parsing_timeout=None)
    if not g:
        return UNVERIFIABLE, "gold not parseable"
    p = parse(f"${pred}$", parsing_timeout=None)
    if not p:
        return WRONG, "prediction not parseable"
    return (CORRECT if verify(g, p, timeout_seconds=None) else WRONG), "math-verify"


def _prepare(pred_text: str, gold: str | None, task: str | Task):
    t = get_task(task) if isinstance(task, str) else task
    g = gold_answer(gold, t)
    if g is None:
        return Verdict(UNVERIFIABLE, None, None, "no gold answer"), None
    pred = extract_answer(pred_text, t)
    if pred is None:
        return Verdict(WRONG, None, g, "no answer"), None
    if t.int_range and as_number(g) is not None and not (t.int_range[0] <= as_number(g) <= t.int_range[1]):
        return Verdict(UNVERIFIABLE, pred, g, "gold out of range"), None
    fast = fast_check(pred, g, t)
    if fast is not None:
        return Verdict(fast, pred, g, "fast-path"), None
    return None, (pred, g)


def check(pred_text: str, gold: str | None, task: str | Task) -> Verdict:
    """Check one completion in this process (no timeout: use check_many for untrusted text)."""
    done, pending = _prepare(pred_text, gold, task)
    if done:
        return done
    status, reason = slow_check(*pending)
    return Verdict(status, pending[0], pending[1], reason)


# ------------------------------------------------------------------ bounded-time pool
class _Timeout(BaseException):
    """BaseException so that math-verify's own `except Exception` cannot swallow it and answer 'wrong'."""


def _alarm(signum, frame):
    raise _Timeout()


def _worker(conn, soft_timeout: float):
    # a worker process runs in its own main thread, so a timer signal works here as a first line;
    # the parent kills the process if a C-level computation ignores it
    signal.signal(signal.SIGALRM, _alarm)
    _quiet_math_verify()
    while True:
        job = conn.recv()
        if job is None:
            return
        for idx, pred, gold in job:
            signal.setitimer(signal.ITIMER_REAL, soft_timeout)
            try:
                status, reason = slow_check(pred, gold)
            except _Timeout:
                status, reason = UNVERIFIABLE, "timeout"
            except Exception as exc:  # math-verify/sympy bugs on odd text must not end the run
                status, reason = UNVERIFIABLE, f"checker error: {type(exc).__name__}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            conn.send((idx, status, reason))


class _Pool:
    def __init__(self, workers: int, timeout: float):
        self.ctx = mp.get_context("fork" if hasattr(signal, "SIGALRM") else "spawn")
        self.timeout = timeout
        self.procs = [self._start() for _ in range(workers)]

    def _start(self):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker, args=(child, self.timeout), daemon=True)
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

    def close(self):
        for w in self.procs:
            try:
                w["conn"].send(None)
            except (BrokenPipeError, OSError):
                pass
            w["proc"].join(timeout=1)
            if w["proc"].is_alive():
                w["proc"].kill()


def check_many(items: list[tuple[str, str | None, str]], workers: int = 2, timeout: float = 5.0,
               stats: dict | None = None) -> list[Verdict]:
    """Check (pred_text, gold, task) triples. Fast path here, the rest in killable worker processes."""
    verdicts: list[Verdict | None] = [None] * len(items)
    slow: list[tuple[int, str, str]] = []
    for i, (text, gold, task) in enumerate(items):
        done, pending = _prepare(text, gold, task)
        if done:
            verdicts[i] = done
        else:
            slow.append((i, *pending))
    if slow:
        pool = _Pool(min(workers, len(slow)), timeout)
        try:
            out = pool.run(slow)
        finally:
            pool.close()
        for i, pred, gold in slow:
            status, reason = out[i]
            verdicts[i] = Verdict(status, pred, gold, reason)
    if stats is not None:
        stats["fast_path"] = stats.get("fast_path", 0) + len(items) - len(slow)
        stats["slow_path"] = stats.get("slow_path", 0) + len(slow)
    return verdicts  # type: ignore[return-value]
