"""`seqdistill report`: the page's numbers match stats.json / eval.json, it needs no network, and in a real
headless Chromium the counts render and the trace filters work (driven through the URL fragment the controls
write). A screenshot is kept in tests/artifacts/."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, cli, recipe

from seqdistill.config import validate
from seqdistill.errors import DataError
from seqdistill.pipeline import run_pipeline
from seqdistill.report import collect, write_report

ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("report")
    # first_k with k=1 keeps one sample per prompt and rejects the other: a funnel with both sides
    cfg = validate(recipe(root, tiny, filter={
        "require_correct": False, "drop_truncated": False, "require_boxed": False, "drop_garbage": False,
        "select": "first_k", "k": 1, "near_dup_threshold": None},
        eval={"data": {"synthetic": {"n": 4, "split": "test"}, "task": "arithmetic"},
              "models": ["teacher", "student"], "sampling": {"n": 1, "max_tokens": 8}}))
    run_pipeline(cfg, stages=["generate", "filter", "eval"])
    return Path(cfg.run_dir)


def _records(folder: Path) -> list[dict]:
    return [r for f in sorted(folder.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_run_writes_report_and_stage_times_that_survive_a_skipping_rerun(run, tiny):
    page = (run / "report.html").read_text()
    times = json.loads((run / "run.json").read_text())["stages"]
    assert set(times) == {"generate", "filter", "eval"} and all(t > 0 for t in times.values())
    cfg = validate(recipe(run.parent, tiny, filter={
        "require_correct": False, "drop_truncated": False, "require_boxed": False, "drop_garbage": False,
        "select": "first_k", "k": 1, "near_dup_threshold": None},
        eval={"data": {"synthetic": {"n": 4, "split": "test"}, "task": "arithmetic"},
              "models": ["teacher", "student"], "sampling": {"n": 1, "max_tokens": 8}}))
    run_pipeline(cfg, stages=["generate", "filter", "eval"])  # everything is skipped
    assert json.loads((run / "run.json").read_text())["stages"] == times
    # self-contained: no script, style, image or link fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "<link" not in page


def test_report_numbers_come_from_the_run_files(run):
    stats = json.loads((run / "filter" / "stats.json").read_text())
    data = collect(run)
    assert data["traces_total"] == stats["input_records"] == 12
    assert sum(t["reason"] == "kept" for t in data["traces"]) == stats["kept"] == 6
    for reason, n in stats["reject_reasons"].items():
        assert sum(t["reason"] == reason for t in data["traces"]) == n
    assert len(data["lengths"]["kept"]) == 6 and len(data["lengths"]["rejected"]) == 6
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert len(data["problems"]) == 4 and all(set(p["by"]) == {"teacher", "student"} for p in data["problems"])
    page = (run / "report.html").read_text()
    funnel = dict(re.findall(r"<tr data-reason='([^']+)'><td>[^<]*</td><td class='count'>(\d+)</td>", page))
    assert funnel["kept"] == str(stats["kept"]) and funnel["generated"] == str(stats["input_records"])
    for label, r in report["models"].items():
        assert f"<tr data-model='{label}'><td>{label}</td>" in page
        assert f"{100 * r['accuracy']['mean']:.1f}%" in page


def test_report_escapes_model_text_and_refuses_a_non_run(run, tmp_path):
    out = write_report(run, tmp_path / "r.html")
    blob = out.read_text().split('<script type="application/json" id="data">', 1)[1].split("</script>", 1)[0]
    assert "</" not in blob  # a completion containing </script> cannot end the data element early
    assert "<" not in blob and ">" not in blob  # nor "<!--<script>" open a script-data escape state
    with pytest.raises(DataError, match="no stage output"):
        collect(tmp_path)
    r = cli("report", str(tmp_path / "nope"))
    assert r.returncode == 2 and "run dir not found" in r.stderr


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None and os.environ.get("SEQDISTILL_REQUIRE_BROWSER"):
        pytest.fail("SEQDISTILL_REQUIRE_BROWSER is set but no chromium is installed")
    return found


def _dom(browser: str, url: str) -> str:
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                        "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _shown(dom: str, element: str) -> int:
    return int(re.search(rf'id="{element}" data-shown="(\d+)"', dom).group(1))


@pytest.mark.slow  # a subprocess run, killed or timed: the full suite (.ci/run) runs it
def test_report_in_headless_chromium_counts_and_filters(run):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not installed (apt-get install chromium); CI installs it")
    url = (run / "report.html").resolve().as_uri()
    stats = json.loads((run / "filter" / "stats.json").read_text())
    traces = _records(run / "filter" / "kept") + _records(run / "filter" / "rejected")
    dom = _dom(browser, url)
    assert f"{stats['input_records']} of {stats['input_records']} traces" in dom
    assert _shown(dom, "trace-count") == stats["input_records"]
    rendered = re.findall(r'<details class="trace" data-verdict="(\w+)"', dom)  # not the script's template
    assert len(rendered) == stats["input_records"]  # fewer than one page: all rendered
    assert _shown(dom, "problem-count") == 4
    for reason, n in [("kept", stats["kept"]), *stats["reject_reasons"].items()]:
        assert _shown(_dom(browser, f"{url}#reason={reason}"), "trace-count") == n
    longest = max(r["completion_tokens"] for r in traces)
    dom = _dom(browser, f"{url}#minlen={longest}&reason=kept")
    assert _shown(dom, "trace-count") == sum(r["completion_tokens"] >= longest and r["reject_reason"] is None
                                             for r in traces)
    needle = traces[0]["question"][:20]
    assert _shown(_dom(browser, f"{url}#q={needle}"), "trace-count") == sum(
        needle.lower() in (r["question"] + " " + (r["answer"] or r["completion"]) + " " + r["reasoning"]).lower()
        for r in traces)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,1600", f"--screenshot={shot}", url], capture_output=True, timeout=120,
                   check=True)
    assert shot.stat().st_size > 10_000


def test_embedded_json_survives_comment_and_script_openers_in_text():
    """`<!--<script>` in a question put the browser's script parser into its escaped states: the data element then
    swallowed the rest of the page and the trace browser stayed empty. Escaped, it reads back unchanged."""
    import json as _json

    from seqdistill.report import render

    evil = "What is 2+2? <!--<script>alert(1)</script>--> </script><script>x()</script>"
    data = {"run_dir": "r", "created": "now", "stages": {}, "filter": None, "eval": None,
            "traces": [{"id": "p", "question": evil}], "traces_total": 1, "problems": []}
    page = render(data)
    blob = page.split('<script type="application/json" id="data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in blob and _json.loads(blob)["traces"][0]["question"] == evil


def test_the_report_finds_a_stage_whose_output_dir_is_outside_the_run_dir(tmp_path, tiny):
    """filter.output_dir and eval.output_dir elsewhere: the page still shows the funnel and the eval (it read
    RUN_DIR/<stage> literally and showed both as absent)."""
    cfg = validate(recipe(tmp_path, tiny, filter={
        "require_correct": False, "drop_truncated": False, "require_boxed": False, "drop_garbage": False,
        "near_dup_threshold": None, "output_dir": str(tmp_path / "elsewhere" / "filtered")},
        eval={"data": {"synthetic": {"n": 2, "split": "test"}, "task": "arithmetic"}, "models": ["teacher"],
              "sampling": {"n": 1, "max_tokens": 4}, "speed_prompts": 0,
              "output_dir": str(tmp_path / "elsewhere" / "scores")}))
    run_pipeline(cfg, stages=["generate", "filter", "eval"])
    data = collect(Path(cfg.run_dir))
    status = {s["name"]: s["status"] for s in data["stages"]}
    assert status["filter"] == status["eval"] == "complete"
    assert data["filter"]["input_records"] == data["traces_total"] > 0 and data["eval"]["models"]["teacher"]
