"""`seqdistill report RUN_DIR`: one self-contained HTML file (no server, no network) that shows a run.

Numbers and plots are rendered here in Python (so they come straight from stats.json / eval.json); the page's
script only browses the traces and eval problems embedded as JSON. Filter state lives in the URL fragment
(`report.html#verdict=wrong&reason=wrong_answer`), so a view can be linked and tests can drive it.

Every other presentation lives here too: filter's summary (`filter_summary`), eval's report.md table
(`eval_markdown`) and report.png (`eval_plot`), so a stage computes numbers and this module shows them."""

from __future__ import annotations

import html
import json
import logging
import math
import time
from pathlib import Path

import pyarrow.parquet as pq

from .config import STAGES
from .errors import DataError
from .store import atomic_write_text

log = logging.getLogger(__name__)

MAX_TRACES = 5000       # traces embedded in the page (the counts above them are always complete)
MAX_CHARS = 8000        # characters kept of one completion
TRACE_COLUMNS = ["prompt_id", "sample_index", "question", "gold", "reasoning", "answer", "completion",
                 "completion_tokens", "finish_reason", "model", "teacher", "verdict", "pred", "verify_reason",
                 "verify_detail", "reject_reason"]


def _read_parquets(folder: Path, columns: list[str]) -> list[dict]:
    rows = []
    for f in sorted(folder.glob("*.parquet")):
        names = pq.read_schema(f).names
        rows += pq.read_table(f, columns=[c for c in columns if c in names]).to_pylist()
    return rows


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _clip(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + f"\n[... {len(text) - MAX_CHARS} more characters]"


def _short_model(path: str | None) -> str:
    return Path(path).name if path else "?"


def collect(run_dir: Path) -> dict:
    """Everything the page shows, from the run dir's files only."""
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run dir not found")
    run = _json(run_dir / "run.json") or {}
    timings = run.get("stages", {})
    # a stage's output_dir may lie outside the run dir: `run` records where each one is
    dirs = {s: Path(run.get("dirs", {}).get(s) or run_dir / s) for s in STAGES}
    stages = []
    for s in STAGES:
        m = _json(dirs[s] / "manifest.json")
        stages.append({"name": s, "status": "absent" if m is None else ("complete" if m.get("complete") else "partial"),
                       "seconds": timings.get(s)})
    if all(s["status"] == "absent" for s in stages):
        raise DataError(f"{run_dir}: no stage output here (expected generate/, filter/, ... with manifest.json)")

    data = {"run_dir": str(run_dir), "created": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": stages,
            "filter": _json(dirs["filter"] / "stats.json"), "eval": _json(dirs["eval"] / "eval.json")}
    if data["filter"] is not None:
        kept = _read_parquets(dirs["filter"] / "kept", TRACE_COLUMNS)
        rejected = _read_parquets(dirs["filter"] / "rejected", TRACE_COLUMNS)
        traces = [dict(r, reject_reason=None) for r in kept] + rejected
    else:  # generate only: traces without verdicts
        traces = _read_parquets(dirs["generate"] / "data", TRACE_COLUMNS)
    data["traces_total"] = len(traces)
    data["lengths"] = {"kept": [r["completion_tokens"] for r in traces if r.get("verdict") and not r.get("reject_reason")],
                       "rejected": [r["completion_tokens"] for r in traces if r.get("reject_reason")]}
    data["traces"] = [{
        "id": r["prompt_id"], "i": r["sample_index"], "q": r["question"], "gold": r.get("gold"),
        "reasoning": _clip(r.get("reasoning")), "answer": _clip(r.get("answer") or r.get("completion")),
        "tokens": r["completion_tokens"], "finish": r.get("finish_reason"),
        "teacher": r["teacher"] if r.get("teacher") not in (None, "teacher") else _short_model(r.get("model")),
        "verdict": r.get("verdict") or "unfiltered", "pred": r.get("pred"), "path": r.get("verify_reason"),
        "detail": r.get("verify_detail"),
        "reason": (r.get("reject_reason") or "kept") if r.get("verdict") else "unfiltered",
    } for r in traces[:MAX_TRACES]]
    data["problems"] = _eval_problems(dirs["eval"], data["eval"])
    return data


def _eval_problems(eval_dir: Path, report: dict | None) -> list[dict]:
    """Each eval problem once, with every model's first sample side by side."""
    if report is None:
        return []
    problems: dict[str, dict] = {}
    for label in report["models"]:
        f = eval_dir / label / "samples.parquet"
        if not f.is_file():
            continue
        for r in pq.read_table(f).to_pylist():
            if r["sample_index"] != 0:
                continue
            p = problems.setdefault(r["prompt_id"], {"id": r["prompt_id"], "q": r["question"], "gold": r["gold"],
                                                     "by": {}})
            p["by"][label] = {"verdict": r["verdict"], "pred": r["pred"], "strict": r.get("strict_verdict"),
                              "tokens": r["completion_tokens"], "text": _clip(r["completion"])}
    return list(problems.values())[:MAX_TRACES]


# ----------------------------------------------------------------- static parts (numbers and plots)
def _e(x) -> str:
    return html.escape(str(x))


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _stages_html(stages: list[dict]) -> str:
    def wall(sec):
        return "-" if sec is None else (f"{sec:.1f} s" if sec < 60 else f"{sec / 60:.1f} min")

    rows = "".join(f"<tr><td>{_e(s['name'])}</td><td class='st-{s['status']}'>{s['status']}</td>"
                   f"<td>{wall(s['seconds'])}</td></tr>" for s in stages)
    return f"<table id='stages'><tr><th>stage</th><th>status</th><th>wall time</th></tr>{rows}</table>"


def _funnel_html(stats: dict) -> str:
    total = max(stats["input_records"], 1)
    rows = [("generated", stats["input_records"])] + sorted(stats["reject_reasons"].items(), key=lambda kv: -kv[1])
    rows.append(("kept", stats["kept"]))
    body = "".join(
        f"<tr data-reason='{_e(name)}'><td>{'rejected: ' if i and name != 'kept' else ''}{_e(name)}</td>"
        f"<td class='count'>{n}</td><td><div class='bar {'keep' if name == 'kept' else ''}' "
        f"style='width:{300 * n / total:.0f}px'></div></td></tr>" for i, (name, n) in enumerate(rows))
    extra = (f"<p>{stats['prompts_with_kept']} of {stats['prompts']} prompts have at least one kept trace. "
             f"Mean tokens: kept {stats['mean_tokens_kept'] or 0:.0f}, rejected {stats['mean_tokens_rejected'] or 0:.0f}."
             "</p>")
    return f"<table id='funnel'>{body}</table>{extra}"


def _histogram_svg(groups: dict[str, list[int]], width: int = 560, height: int = 180, bins: int = 24) -> str:
    values = [v for vs in groups.values() for v in vs]
    if not values:
        return "<p>no traces</p>"
    hi = max(values) + 1
    step = max(1, -(-hi // bins))
    counts = {g: [0] * bins for g in groups}
    for g, vs in groups.items():
        for v in vs:
            counts[g][min(v // step, bins - 1)] += 1
    top = max(max(c) for c in counts.values()) or 1
    colors = {"kept": "#55a868", "rejected": "#c44e52"}
    bw = (width - 40) / bins
    parts = []
    for gi, (g, cs) in enumerate(counts.items()):
        for b, c in enumerate(cs):
            h = (height - 30) * c / top
            parts.append(f"<rect x='{30 + b * bw + gi * bw / len(counts):.1f}' y='{height - 20 - h:.1f}' "
                         f"width='{bw / len(counts) - 1:.1f}' height='{h:.1f}' fill='{colors.get(g, '#4c72b0')}'>"
                         f"<title>{g}: {c} traces, {b * step}-{(b + 1) * step - 1} tokens</title></rect>")
    legend = " ".join(f"<tspan fill='{colors.get(g, '#4c72b0')}'>&#9632; {g} ({len(groups[g])})</tspan>" for g in groups)
    ticks = []  # x: tokens at 0, 1/4, ..., the end; y: trace counts at 0, half, top
    for q in range(5):
        x = 30 + (width - 40) * q / 4
        ticks.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{height - 20}' y2='{height - 16}' stroke='#555'/>"
                     f"<text x='{x - 8:.1f}' y='{height - 4}' font-size='10'>{step * bins * q // 4}</text>")
    for frac in (0, 0.5, 1):
        y = height - 20 - (height - 30) * frac
        ticks.append(f"<line x1='26' x2='30' y1='{y:.1f}' y2='{y:.1f}' stroke='#555'/>"
                     f"<text x='0' y='{y + 3:.1f}' font-size='10'>{round(top * frac)}</text>")
    return (f"<svg class='hist' width='{width}' height='{height}' role='img'>{''.join(parts)}{''.join(ticks)}"
            f"<line x1='30' x2='{width - 10}' y1='{height - 20}' y2='{height - 20}' stroke='#555'/>"
            f"<text x='40' y='12' font-size='12'>{legend}</text>"
            f"<text x='{width - 120}' y='24' font-size='10'>x: output tokens, y: traces</text></svg>")


def _eval_html(report: dict) -> str:
    head = ("<tr><th>model</th><th>params</th><th>accuracy [95% CI]</th><th>strict [95% CI]</th>"
            "<th>format</th><th>trunc</th><th>mean tok</th><th>tok/s</th><th>retention</th><th>size</th></tr>")
    rows = []
    for label, r in report["models"].items():
        s = report.get("summary", {}).get(label, {})
        acc, strict = r["accuracy"], r["strict"]["pass@1"]
        tps = f"{r['tokens_per_s']:.1f}" if r["tokens_per_s"] else "-"
        rows.append(
            f"<tr data-model='{_e(label)}'><td>{_e(label)}</td><td>{r['params'] / 1e6:.0f}M</td>"
            f"<td class='acc'>{_pct(acc['mean'])} [{_pct(acc['ci95'][0])}, {_pct(acc['ci95'][1])}]</td>"
            f"<td>{_pct(strict['mean'])} [{_pct(strict['ci95'][0])}, {_pct(strict['ci95'][1])}]</td>"
            f"<td>{_pct(r['format']['mean'])}</td><td>{_pct(r['truncation_rate'])}</td>"
            f"<td>{r['mean_output_tokens']:.0f}</td><td>{tps}</td>"
            f"<td>{_pct(s.get('retention'))}</td><td>{_pct(s.get('size_ratio'))}</td></tr>")
    bars, width = [], 520
    for i, (label, r) in enumerate(report["models"].items()):
        y = 10 + i * 28
        m, (lo, hi) = r["accuracy"]["mean"], r["accuracy"]["ci95"]
        bars.append(f"<text x='0' y='{y + 14}' font-size='12'>{_e(label)}</text>"
                    f"<rect x='110' y='{y}' width='{(width - 120) * m:.1f}' height='18' fill='#4c72b0'/>"
                    f"<line x1='{110 + (width - 120) * lo:.1f}' x2='{110 + (width - 120) * hi:.1f}' y1='{y + 9}' "
                    f"y2='{y + 9}' stroke='#111' stroke-width='2'/>"
                    f"<text x='{114 + (width - 120) * hi:.1f}' y='{y + 14}' font-size='11'>{_pct(m)}</text>")
    svg = (f"<svg width='{width + 60}' height='{20 + 28 * len(report['models'])}' role='img'>{''.join(bars)}</svg>")
    ov = report.get("train_overlap", {})
    note = (f"<p>{_e(report['benchmark'])} ({_e(report['task'])}), k={report['k']}, backend {_e(report['backend'])}. "
            f"Train/eval overlap: {ov.get('overlapping', '?')} of {ov.get('items', '?')} items "
            f"({ov.get('ngram', '?')}-grams). Bars: accuracy with 95% CI.</p>")
    paired = [p for p in report.get("paired", []) if p.get("diff") is not None]
    ptable = ""
    if paired:
        ptable = ("<p>Paired on the same problems: accuracy difference with a paired bootstrap 95% CI, exact McNemar "
                  "p; gained = right for the model and wrong for the one it is against, lost = the reverse.</p>"
                  "<table id='pairedtable'>"
                  "<tr><th>model</th><th>against</th><th>problems</th><th>difference [95% CI]</th><th>gained</th>"
                  "<th>lost</th><th>McNemar p</th></tr>" + "".join(
                      f"<tr data-model='{_e(p['model'])}'><td>{_e(p['model'])}</td><td>{_e(p['against'])}</td>"
                      f"<td>{p['problems']}</td><td>{100 * p['diff']:+.1f} pts [{100 * p['ci95'][0]:+.1f}, "
                      f"{100 * p['ci95'][1]:+.1f}]</td><td>{p['gained']}</td><td>{p['lost']}</td>"
                      f"<td>{p['mcnemar_p']:.3g}</td></tr>" for p in paired) + "</table>")
    gaps = report.get("gap_closed") or {}
    gtable = ("<p>Share of the teacher gap closed, (after - before) / (teacher - before), paired bootstrap 95% CI:"
              "</p><table id='gaptable'><tr><th>model</th><th>gap closed [95% CI]</th></tr>" + "".join(
                  f"<tr data-model='{_e(label)}'><td>{_e(label)}</td><td>{_e(gap_text(g))}</td></tr>"
                  for label, g in gaps.items()) + "</table>") if gaps else ""
    return f"{note}<table id='evaltable'>{head}{''.join(rows)}</table>{svg}{ptable}{gtable}"


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>seqdistill run: {title}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:20px auto;max-width:1200px;color:#222}}
h1{{font-size:20px}} h2{{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse;margin:6px 0}} td,th{{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}}
.bar{{height:12px;background:#c44e52}} .bar.keep{{background:#55a868}} .count{{text-align:right}}
.st-complete{{color:#2a7}} .st-partial{{color:#c80}} .st-absent{{color:#999}}
#controls input,#controls select,#pcontrols select,#pcontrols input{{margin-right:10px}}
.trace,.problem{{border:1px solid #ddd;border-radius:4px;margin:6px 0;padding:4px 8px}}
.v-correct{{color:#2a7;font-weight:600}} .v-wrong{{color:#c33;font-weight:600}} .v-unverifiable{{color:#c80}}
pre{{white-space:pre-wrap;background:#f7f7f7;padding:6px;margin:4px 0;max-height:400px;overflow:auto}}
.cols{{display:flex;gap:8px}} .cols>div{{flex:1;min-width:0}} .muted{{color:#777}}
</style></head><body>
<h1>seqdistill run <code>{title}</code></h1>
<p class="muted">report written {created}; everything below comes from the run dir's files.</p>
<h2>Stages</h2>{stages}
{filter_section}
{eval_section}
<h2>Traces</h2>
<div id="controls">
<input id="q" type="search" placeholder="search question / answer">
verdict <select id="verdict"></select> reason <select id="reason"></select> <span id="teacher-filter">teacher <select id="teacher"></select></span>
tokens <input id="minlen" type="number" style="width:70px" placeholder="min"><input id="maxlen" type="number"
style="width:70px" placeholder="max">
</div>
<p><span id="trace-count"></span> {capped}</p>
<div id="traces"></div><button id="more">show more</button>
{problems_section}
<script type="application/json" id="data">{payload}</script>
<script>
const D = JSON.parse(document.getElementById('data').textContent);
const $ = id => document.getElementById(id);
const esc = s => String(s ?? '').replace(/[&<>"']/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}})[c]);
const TEACHERS = new Set(D.traces.map(t => t.teacher)).size;  // name the teacher only when there are several
const FIELDS = ['q', 'verdict', 'reason', 'teacher', 'minlen', 'maxlen', 'show', 'pq'];
function state() {{ return new URLSearchParams(location.hash.slice(1)); }}
function fill(sel, values) {{
  sel.innerHTML = '<option value="">all</option>' + [...new Set(values)].sort().map(v => `<option>${{esc(v)}}</option>`).join('');
}}
let limit = 100;
function traceMatches(t, s) {{
  const q = (s.get('q') || '').toLowerCase();
  if (q && !(t.q + ' ' + t.answer + ' ' + t.reasoning).toLowerCase().includes(q)) return false;
  for (const k of ['verdict', 'reason', 'teacher']) if (s.get(k) && t[k] !== s.get(k)) return false;
  if (s.get('minlen') && t.tokens < +s.get('minlen')) return false;
  if (s.get('maxlen') && t.tokens > +s.get('maxlen')) return false;
  return true;
}}
function renderTraces() {{
  const s = state(), shown = D.traces.filter(t => traceMatches(t, s));
  $('trace-count').textContent = `${{shown.length}} of ${{D.traces.length}} traces`;
  $('trace-count').dataset.shown = shown.length;
  $('traces').innerHTML = shown.slice(0, limit).map(t => `<details class="trace" data-verdict="${{esc(t.verdict)}}">
<summary><b>${{esc(String(t.q).split(/\s+/).slice(0, 12).join(' '))}}…</b> <small>${{esc(t.id)}} #${{t.i}}</small> <span class="v-${{esc(t.verdict)}}">${{esc(t.verdict)}}</span> ${{esc(t.reason)}},
${{t.tokens}} tokens, ${{esc(t.finish)}}${{TEACHERS > 1 ? ', teacher ' + esc(t.teacher) : ''}}</summary>
<div><b>question</b><pre>${{esc(t.q)}}</pre><b>gold</b><pre>${{esc(t.gold)}}</pre>
<details><summary>reasoning (${{t.reasoning.length}} chars)</summary><pre>${{esc(t.reasoning)}}</pre></details>
<b>answer</b><pre>${{esc(t.answer)}}</pre>
<b>extracted</b> <code>${{esc(t.pred)}}</code> &middot; <b>verifier path</b> <code>${{esc(t.path)}}</code>
${{t.detail ? `<pre class="muted">${{esc(t.detail)}}</pre>` : ''}}</div></details>`).join('');
  $('more').style.display = shown.length > limit ? '' : 'none';
}}
const BEFORE = 'student', LABELS = D.eval ? Object.keys(D.eval.models) : [];
const AFTER = LABELS.filter(l => l !== 'teacher' && l !== BEFORE).slice(-1)[0];
function problemMatches(p, s) {{
  const q = (s.get('pq') || '').toLowerCase();
  if (q && !p.q.toLowerCase().includes(q)) return false;
  const v = l => (p.by[l] || {{}}).verdict === 'correct';
  switch (s.get('show')) {{
    case 'fixed': return !v(BEFORE) && v(AFTER);
    case 'broke': return v(BEFORE) && !v(AFTER);
    case 'teacher_only': return v('teacher') && !v(AFTER);
    case 'disagree': return new Set(LABELS.map(v)).size > 1;
  }}
  return true;
}}
function renderProblems() {{
  if (!$('problems')) return;
  const s = state(), shown = D.problems.filter(p => problemMatches(p, s));
  $('problem-count').textContent = `${{shown.length}} of ${{D.problems.length}} problems`;
  $('problem-count').dataset.shown = shown.length;
  $('problems').innerHTML = shown.slice(0, limit).map(p => `<div class="problem"><b>${{esc(p.id)}}</b> gold <code>${{esc(p.gold)}}</code>
<pre>${{esc(p.q)}}</pre><div class="cols">${{LABELS.map(l => {{ const r = p.by[l] || {{}};
return `<div><b>${{esc(l)}}</b> <span class="v-${{esc(r.verdict)}}">${{esc(r.verdict)}}</span> <code>${{esc(r.pred)}}</code>
${{r.tokens ?? ''}} tok<details><summary>output</summary><pre>${{esc(r.text)}}</pre></details></div>`; }}).join('')}}</div></div>`).join('');
}}
function render() {{
  const s = state();
  for (const f of FIELDS) if ($(f) && $(f).value !== (s.get(f) || '')) $(f).value = s.get(f) || '';
  renderTraces(); renderProblems();
}}
function update() {{
  const s = new URLSearchParams();
  for (const f of FIELDS) if ($(f) && $(f).value) s.set(f, $(f).value);
  limit = 100; location.hash = s.toString(); render();
}}
fill($('verdict'), D.traces.map(t => t.verdict)); fill($('reason'), D.traces.map(t => t.reason));
fill($('teacher'), D.traces.map(t => t.teacher));
if (TEACHERS < 2) $('teacher-filter').style.display = 'none';
for (const f of FIELDS) if ($(f)) $(f).addEventListener('input', update);
$('more').onclick = () => {{ limit += 100; render(); }};
window.addEventListener('hashchange', render);
render();
</script></body></html>
"""


def render(data: dict) -> str:
    stats = data["filter"]
    filter_section = ""
    if stats is not None:
        filter_section = (f"<h2>Filter</h2>{_funnel_html(stats)}<h3>Output length, kept vs rejected</h3>"
                          f"{_histogram_svg(data['lengths'])}")
    eval_section = f"<h2>Eval</h2>{_eval_html(data['eval'])}" if data["eval"] else ""
    problems_section = ""
    if data["problems"]:
        problems_section = (
            "<h2>Eval problems, side by side</h2><div id='pcontrols'><input id='pq' type='search' "
            "placeholder='search question'> show <select id='show'><option value=''>all</option>"
            "<option value='fixed'>student wrong before, right after</option>"
            "<option value='broke'>student right before, wrong after</option>"
            "<option value='teacher_only'>teacher right, student after wrong</option>"
            "<option value='disagree'>models disagree</option></select></div>"
            "<p id='problem-count'></p><div id='problems'></div>")
    capped = (f"(the page holds the first {len(data['traces'])} of {data['traces_total']} traces)"
              if data["traces_total"] > len(data["traces"]) else "")
    payload = {"traces": data["traces"], "problems": data["problems"], "eval": data["eval"]}
    # inside <script>, "</script" ends the element and "<!--" opens script-data escape states in which a later
    # </script> no longer ends it (the page's data then never parses): escape both; JSON reads \u003c as "<"
    blob = json.dumps(payload, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e")
    return PAGE.format(title=_e(data["run_dir"]), created=_e(data["created"]), stages=_stages_html(data["stages"]),
                       filter_section=filter_section, eval_section=eval_section, capped=capped,
                       problems_section=problems_section, payload=blob)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    run_dir = Path(run_dir)
    data = collect(run_dir)
    path = Path(out) if out else run_dir / "report.html"
    if path.is_dir():
        raise DataError(f"--out {path}: is a directory; name an HTML file")
    if not path.parent.is_dir():
        raise DataError(f"--out {path}: folder {path.parent} does not exist")
    atomic_write_text(path, render(data))
    log.info("report: %d traces, %d eval problems -> %s", len(data["traces"]), len(data["problems"]), path)
    return path


# ------------------------------------------------ the tables, plots and summaries eval and filter write
def filter_summary(stats: dict) -> str:
    lines = [f"filter: kept {stats['kept']} / {stats['input_records']} traces "
             f"({stats['prompts_with_kept']} / {stats['prompts']} prompts)"]
    for reason, n in stats["reject_reasons"].items():
        lines.append(f"  rejected {reason:<24} {n}")
    if stats.get("not_correct_reasons"):
        lines.append("  not correct, verifier's reason: " + ", ".join(f"{k} {v}" for k, v in
                                                                    stats["not_correct_reasons"].items()))
    lines.append(f"  mean tokens kept {stats['mean_tokens_kept'] or 0:.1f}, "
                 f"rejected {stats['mean_tokens_rejected'] or 0:.1f}")
    lines.append("  pass-rate histogram " + " ".join(f"{k}:{v}" for k, v in stats["pass_rate_histogram"].items()))
    if len(stats.get("per_teacher", {})) > 1:
        for name, t in stats["per_teacher"].items():
            lines.append(f"  teacher {name}: kept {t['kept']} / {t['input']} (correct {t['correct']}), "
                         f"rejected {t['reject_reasons']}")
    if stats.get("prompts_removed"):
        lines.append("  prompts removed " + ", ".join(f"{k}: {v}" for k, v in stats["prompts_removed"].items()))
    m = stats.get("majority_labels")
    if m:
        lines.append(f"  majority labels: {m['labelled']} of {m['prompts_without_gold']} gold-less prompts labelled"
                     f"; on prompts with gold the majority agreed {m['majority_agrees_with_gold']}"
                     f" / {m['with_gold_and_majority']}")
    if stats["contamination_hits"]:
        lines.append(f"  contaminated prompts per benchmark {stats['contamination_hits']}")
    return "\n".join(lines)


def _fmt(x, pct=False, digits=2):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.{digits}f}"


def _tps(r: dict) -> str:
    spread = r.get("tokens_per_s_spread")
    return _fmt(r.get("tokens_per_s"), digits=1) + (f" ({spread[0]:.1f}-{spread[1]:.1f})" if spread else "")


def _speedup(s: dict) -> str:
    if not s.get("speedup"):
        return "-"
    spread = s.get("speedup_spread")
    return f"{s['speedup']:.2f}x" + (f" ({spread[0]:.2f}-{spread[1]:.2f})" if spread else "")


def eval_markdown(report: dict) -> str:
    k = report["k"]
    head = ["model", "params", "accuracy [95% CI]", "strict [95% CI]", "format [95% CI]"] + (
        [f"pass@{k}", f"maj@{k}"] if k > 1 else []) + ["no answer", "trunc", "mean tok", "tok/s", "s/problem",
                                                        "retention", "size", "speed-up"]
    lines = [f"### {report['benchmark']} ({report['task']}), k={k}, backend {report['backend']}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in report["models"].items():
        s = report["summary"].get(label, {})
        row = [label, f"{r['params'] / 1e6:.0f}M"] + [
            f"{_fmt(m['mean'], True)} [{_fmt(m['ci95'][0], True)}, {_fmt(m['ci95'][1], True)}]"
            for m in (r["accuracy"], r["strict"]["pass@1"], r["format"])]
        if k > 1:
            row += [_fmt(r.get(f"pass@{k}", {}).get("mean"), True), _fmt(r.get(f"maj@{k}", {}).get("mean"), True)]
        row += [_fmt(r["no_answer_rate"], True), _fmt(r["truncation_rate"], True), f"{r['mean_output_tokens']:.0f}",
                _tps(r),
                _fmt(r["latency_per_problem_s"], digits=1), _fmt(s.get("retention"), True),
                _fmt(s.get("size_ratio"), True), _speedup(s)]
        lines.append("| " + " | ".join(row) + " |")
    timed = {label: r for label, r in report["models"].items() if r.get("tokens_per_s")}
    free = [label for label, r in timed.items() if not r.get("speed_fixed_length")]
    if free:  # distillation_summary gave these no speed-up: their tok/s measured answer lengths too
        lines += ["", "tok/s of " + ", ".join(free) + " was timed on answers of free length (the backend cannot "
                  "ignore the end of sequence, or the timing predates fixed-length timing): no speed-up is given"]
    elif timed:
        n = {r.get("speed_tokens_per_sequence") for r in timed.values()}
        lines += ["", f"tok/s: every timed sequence decoded exactly {'/'.join(str(x) for x in sorted(n))} tokens "
                  "(end of sequence ignored), so every model did the same work"]
    wit = [(label, r["witness"]) for label, r in report["models"].items() if r.get("witness")]
    if wit:
        lines += ["", "Outside witness (" + wit[0][1]["scorer"] + "), agreement with our accuracy verdicts per "
                  "sample: " + "; ".join(f"{label} {100 * w['agreement']:.1f}% ({w['disagreements']} differ; its "
                                         f"accuracy {100 * w['accuracy']:.1f}%)" for label, w in wit)]
    if report.get("paired"):
        lines += ["", "Paired on the same problems (accuracy difference, paired bootstrap 95% CI; exact McNemar p; "
                      "gained = right for the model and wrong for the one it is against, lost = the reverse):", "",
                  "| model | against | problems | difference [95% CI] | gained | lost | McNemar p |",
                  "|---|---|---|---|---|---|---|"]
        for p in report["paired"]:
            if p["diff"] is None:
                continue
            lines.append(f"| {p['model']} | {p['against']} | {p['problems']} | {100 * p['diff']:+.1f} pts "
                         f"[{100 * p['ci95'][0]:+.1f}, {100 * p['ci95'][1]:+.1f}] | {p['gained']} | {p['lost']} | "
                         f"{p['mcnemar_p']:.3g} |")
    if report.get("teacher_ranking"):
        lines += ["", "Which teacher makes the better student (student accuracy, 95% CI):"] + [
            f"{i + 1}. {row['teacher']}: {100 * row['accuracy']:.1f}% [{100 * row['ci95'][0]:.1f}%, "
            f"{100 * row['ci95'][1]:.1f}%]" for i, row in enumerate(report["teacher_ranking"])]
    for label, nz in (report.get("repeat_noise") or {}).items():
        lines += ["", f"Run-to-run noise: {label} sampled again with batches of {nz['repeat_batch_size']} instead of "
                  f"{nz['batch_size']} (same model, same problems, greedy): {nz['completions_differ']} of "
                  f"{nz['samples']} completions differ, {nz['verdict_flips']} verdicts flip "
                  f"({nz['flipped_to_correct']} to correct, {nz['flipped_to_wrong']} to wrong; accuracy "
                  f"{100 * nz['accuracy_diff']:+.1f} pts). A difference between arms of that size is the engine's "
                  "batching, not training."]
    if report.get("gap_closed"):
        lines += ["", "Share of the teacher gap closed, (after - before) / (teacher - before), paired bootstrap 95% CI:",
                  ""] + [f"- {label}: {gap_text(g)}" for label, g in report["gap_closed"].items()]
    return "\n".join(lines)


def gap_text(g: dict) -> str:
    if g.get("gap_closed") is None:
        return "- (the teacher is not above the student before)"
    lo, hi = g["ci95"]
    ci = f" [{100 * lo:+.0f}%, {100 * hi:+.0f}%]" if lo is not None else ""
    return f"{100 * g['gap_closed']:+.1f}%{ci} on {g['problems']} problems"


def eval_plot(report: dict, lengths: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: no report.png (report.md and eval.json are written)")
        return None
    models = report["models"]
    labels = list(models)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    means = [models[m]["accuracy"]["mean"] * 100 for m in labels]
    lo = [means[i] - models[m]["accuracy"]["ci95"][0] * 100 for i, m in enumerate(labels)]
    hi = [models[m]["accuracy"]["ci95"][1] * 100 - means[i] for i, m in enumerate(labels)]
    bars = ax1.bar(labels, means, yerr=[lo, hi], capsize=6, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][
        :len(labels)] + ["#8172b3"] * max(0, len(labels) - 4))
    for b, m in zip(bars, labels):
        ret = report["summary"].get(m, {}).get("retention")
        if ret is not None:
            ax1.annotate(f"{ret:.0%} of teacher", (b.get_x() + b.get_width() / 2, b.get_height()),
                         ha="center", va="bottom", fontsize=8, xytext=(0, 12), textcoords="offset points")
    ax1.set_ylabel("accuracy, pass@1 (%) with 95% CI")
    ax1.set_title(f"{report['benchmark']}: accuracy")
    ax1.set_ylim(0, 110)
    for m in labels:
        ax2.hist(lengths[m] or [0], bins=20, alpha=0.5, label=m)
    ax2.set_title("output tokens per sample")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
