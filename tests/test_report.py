"""The HTML report (issue 24): one self-contained file per study, checked as text and in a real
headless Chromium with the network blocked (skipped only where no chromium is installed, and
never under CI, whose .ci/run installs it). Screenshots go to tests/artifacts/ (git-ignored)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
MAX_BYTES = 2 * 1024 * 1024

#: a small sweep: 4 bandwidths x 3 batches of Llama-2-7B decode on one H100 (12 points)
SWEEP_SPEC = """\
[system]
chip = "h100-sxm"
chips = 1

[workload]
kind = "decode"
model = "llama-2-7b"
context = 2048

[axes]
"hbm.bandwidth" = ["2 TB/s", "3.35 TB/s", "5 TB/s", "8 TB/s"]
batch = [1, 8, 32]
"""

#: the issue's own example, and the same for train, sweep and compare
COMMANDS = {
    "decode": ["decode", "--model", "llama-2-70b", "--chip", "h100-sxm", "--chips", "2",
               "--context", "2048"],
    "train": ["train", "--model", "llama-2-7b", "--chip", "h100-sxm", "--chips", "8", "--tp", "2",
              "--pp", "2", "--global-batch", "8"],
    "sweep": ["sweep", "{spec}", "-o", "{dir}/sweep.csv", "--no-progress", "--workers", "1"],
    "compare": ["compare", "--chip", "h100-sxm,b200", "--model", "llama-2-70b"],
}  # fmt: skip


def _make(kind: str, folder: Path) -> tuple[Path, str]:
    """Write the report of COMMANDS[kind] into ``folder``: (the file, what stdout printed)."""
    import contextlib
    import io

    spec = folder / "spec.toml"
    spec.write_text(SWEEP_SPEC)
    out = folder / f"{kind}.html"
    argv = [a.format(spec=spec, dir=folder) for a in COMMANDS[kind]] + ["--html", str(out)]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return out, buf.getvalue()


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reports")
    return {kind: _make(kind, folder)[0] for kind in COMMANDS}


# ---- the file -------------------------------------------------------------------------------------

#: anything that would make a browser fetch: an absolute or scheme-relative URL in src/href/url(),
#: a stylesheet link, an @import, a script or image from elsewhere
_FETCHES = re.compile(
    r"""\b(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)"""
    r"""|url\(\s*["']?\s*(?:[a-z][a-z0-9+.-]*:|//)|@import|<link\b|<iframe\b|<object\b""",
    re.I,
)


def _no_inline_images(text: str) -> str:
    """``text`` less the PNGs matplotlib embeds in an SVG with very many marks (no request)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=\s]*", "", text)


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_the_report_is_one_small_file_that_fetches_nothing(kind, reports):
    text = reports[kind].read_text(encoding="utf-8")
    assert reports[kind].stat().st_size <= MAX_BYTES
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not _FETCHES.search(_no_inline_images(text))
    assert 'class="rs-summary"' in text and ">Summary<" in text
    assert "<svg" in text and 'role="img"' in text and "<title>" in text
    assert '<table class="sortable">' in text and 'scope="col"' in text
    assert "@media print" in text
    assert f"roofsim {COMMANDS[kind][0]} " in text  # the command in the footer


def test_the_decode_report_shows_the_run_and_its_inputs(reports):
    text = reports["decode"].read_text()
    assert "Roofline" in text and "mlp_up" in text and "Memory against capacity" in text
    assert "fused-graphs" in text and "overrides (--set)" in text
    # every op of the run is a row of the per-op table
    from hardware import load_system
    from sim import simulate
    from workloads import Decode, load_model

    result = simulate(Decode(model=load_model("llama-2-70b"), context=2048, tp=2),
                      load_system("h100-sxm", 2))  # fmt: skip
    for row in result.op_rows():
        assert f'<th scope="row">{row["name"]}</th>' in text


def test_every_set_override_is_in_the_report(tmp_path):
    out = tmp_path / "r.html"
    assert main(["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--set",
                 "hbm.bandwidth=5TB/s", "--set", "overhead.kernel_s=3us", "--html", str(out),
                 "--json"]) == 0  # fmt: skip
    text = out.read_text()
    assert "hbm.bandwidth=5TB/s, overhead.kernel_s=3us" in text
    assert "5 TB/s" in text  # the chip as simulated


def test_json_output_stays_one_object_with_html(tmp_path, capsys):
    out = tmp_path / "r.html"
    argv = ["decode", "--model", "llama-2-7b", "--chip", "h100-sxm", "--json", "--html", str(out)]
    assert main(argv) == 0
    json.loads(capsys.readouterr().out)
    assert out.is_file()


def test_a_malicious_model_name_is_escaped(tmp_path):
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    preset = (ROOT / "workloads" / "presets" / "llama-2-7b.toml").read_text()
    model = tmp_path / "evil.toml"
    model.write_text(preset.replace('name = "llama-2-7b"', f"name = {json.dumps(evil)}", 1))
    out = tmp_path / "r.html"
    assert main(["decode", "--model", str(model), "--chip", "h100-sxm", "--html", str(out)]) == 0
    text = out.read_text()
    assert evil not in text and "<script>alert" not in text and "<img" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert text.count("<script>") == 1  # only the page's own sorting script


@pytest.mark.parametrize(
    ("where", "why"),
    [("missing-folder/r.html", "no folder"), (".", "it is a folder")],
)
def test_an_unwritable_html_path_is_one_line_before_the_run(where, why, tmp_path):
    path = tmp_path / where
    proc = subprocess.run(
        [sys.executable, "-m", "sim.cli", "decode", "--model", "llama-2-7b", "--chip",
         "h100-sxm", "--html", str(path)], capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""  # nothing ran
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"roofsim: error: --html: cannot write {path}: {lines[0].split(': ')[-1]}"]
    assert why in lines[0] and "Traceback" not in proc.stderr


def test_a_write_that_fails_late_is_the_same_one_line(tmp_path, monkeypatch):
    from hardware import ConfigError
    from sim.plots import report

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(ConfigError, match=r"^--html: cannot write x\.html: Permission denied$"):
        report.write_html("x.html", "<p>")


def test_the_notebook_summary_is_the_reports_summary(reports):
    from hardware import load_system
    from sim import simulate
    from workloads import Decode, load_model

    result = simulate(Decode(model=load_model("llama-2-70b"), context=2048, tp=2),
                      load_system("h100-sxm", 2))  # fmt: skip
    fragment = result._repr_html_()
    assert fragment.startswith('<section class="rs-summary"') and "<style>" in fragment
    page = reports["decode"].read_text()
    cards = re.findall(r'<div class="rs-card">.*?</div>', fragment)
    assert len(cards) >= 6 and all(card in page for card in cards)


def test_train_and_serve_results_show_themselves_in_a_notebook():
    from hardware import load_system
    from sim.engine.serve import simulate_serving
    from sim.engine.train import simulate_training
    from workloads import load_model
    from workloads.serving import LengthDist, Serving
    from workloads.training import Training

    model = load_model("llama-2-7b")
    train = simulate_training(Training(model=model, seq=1024, micro_batch=1, dp=1),
                              load_system("h100-sxm", 1), check_memory=False)  # fmt: skip
    assert "step time" in train._repr_html_() and "MFU" in train._repr_html_()
    serving = Serving(model=model, rate=1.0, duration_s=5.0, prompt=LengthDist.parse("200", "--prompt-dist", 4096),
                      output=LengthDist.parse("20", "--output-dist", 4096))  # fmt: skip
    served = simulate_serving(serving, load_system("h100-sxm", 1))
    assert "TTFT p50" in served._repr_html_() and "KV cache" in served._repr_html_()


def test_the_cost_layer_does_not_import_the_report():
    code = "import sim.cost.result, sim.engine.train, sys; print('sim.plots' in str(list(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_the_sweep_report_runs_its_best_point_again_and_gets_the_csv_row(reports):
    import tomllib

    from sim.studies.sweep import evaluate_points, simulate_point, spec_from_dict

    spec = spec_from_dict(tomllib.loads(SWEEP_SPEC))
    for point in range(spec.n_points):
        row = evaluate_points(spec, [point])[0]
        result, system = simulate_point(spec, point)
        assert float(row["time_s"]) == pytest.approx(result.time_s, rel=1e-12)
        assert system.n_chips == 1
    text = reports["sweep"].read_text()
    # the best point: the highest bandwidth at the largest batch (point 11 of 12)
    assert "Best point (11)" in text and "12 points" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["prefill", "--model", "llama-2-7b", "--chip", "h100-sxm", "--prompt", "512"],
        ["dit", "--model", "sd3-medium", "--chip", "h100-sxm", "--steps", "4"],
        ["serve", "--model", "llama-2-7b", "--chip", "h100-sxm", "--rate", "1", "--duration",
         "10", "--slo-ttft", "1"],
        ["claims", "--claim", "1tb-text"],
        ["validate", "--fast", "--kind", "gemm", "--no-fail"],
    ],
    ids=["prefill", "dit", "serve", "claims", "validate"],
)  # fmt: skip
def test_every_other_command_writes_a_page(argv, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main([*argv, "--html", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    assert 'class="rs-summary"' in text and "<table" in text and text.count("<script>") == 1
    assert not _FETCHES.search(_no_inline_images(text))


def test_the_plan_page_says_when_no_degree_meets_the_slo():
    from sim.plots.report import plan_report
    from sim.studies.plan import SLO, Demand, Plan, TPOption

    plan = Plan(demand=Demand(mean_rate=5.0), slo=SLO(ttft_s=1.0), chip="<h100>",
                options=(TPOption.refused(1, "does not fit on 1 chip"),),
                usd_per_chip_hour=None, mean_output_tokens=250.0)  # fmt: skip
    text = plan_report(plan, inputs={"chip": "<h100>"}, command=["plan", "--chip", "<h100>"])
    assert "no TP degree meets the SLO" in text and "does not fit on 1 chip" in text
    assert "<h100>" not in text and "roofsim plan --chip &#x27;&lt;h100&gt;&#x27;" in text


# ---- in a real browser ----------------------------------------------------------------------------


def _chromium() -> str | None:
    for path in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser")):
        if path and Path(path).is_file():
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(
                "chromium is missing under CI: .ci/run installs it (apt-get install chromium)"
            )
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


#: per report: the selector of the sortable per-op table and of its roofline chart
OPS_TABLE = {"decode": "#ops table", "train": "#ops table", "compare": "#ops table",
             "sweep": "#best table.sortable"}  # fmt: skip


@pytest.mark.parametrize("kind", list(COMMANDS))
def test_the_report_renders_offline_in_chromium_and_its_table_sorts(kind, reports, browser):
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    asked, errors = [], []
    url = reports[kind].resolve().as_uri()

    def route(r):
        if r.request.url.startswith("file:"):
            r.continue_()
        else:
            asked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on(
        "request", lambda r: None if r.url.startswith(("file:", "data:")) else asked.append(r.url)
    )
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load")

    assert page.locator(".rs-summary").first.is_visible()
    charts = page.locator("svg.chart")
    assert charts.count() >= 3
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box and box["width"] > 50 and box["height"] > 20, (kind, i, box)
    roofline = page.locator('svg[aria-label*="Roofline"]').first
    assert roofline.is_visible() and roofline.bounding_box()["height"] > 100
    table = page.locator(OPS_TABLE[kind]).first
    assert table.is_visible()

    def first_column() -> list[str]:
        return table.locator("tbody tr > th").all_inner_texts()

    before = first_column()
    assert len(before) >= 5
    table.locator("thead th").first.locator("button").click()
    after = first_column()
    assert sorted(before, key=str.lower) == sorted(after, key=str.lower)
    in_order = page.evaluate(
        "names => names.slice().sort((a, b) => a.localeCompare(b, undefined, {numeric: true}))",
        before,
    )  # the browser's own collation ('_' and '.' order as the reader's locale has them)
    assert after != before and after == in_order
    assert table.locator("thead th").first.get_attribute("aria-sort") == "ascending"
    table.locator("thead th").first.locator("button").click()
    assert first_column() == after[::-1]
    time_col = table.locator("thead th").filter(has_text=re.compile(r"^time")).first
    time_col.locator("button").click()
    index = table.locator("thead th").all_inner_texts().index(time_col.inner_text())
    values = [float(v) for v in table.locator(f"tbody tr > :nth-child({index + 1})").evaluate_all(
        "cells => cells.map(c => c.getAttribute('data-v')).filter(v => v)")]  # fmt: skip
    assert values == sorted(values) and len(values) >= 5

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"report-{kind}.png"), full_page=True)
    page.close()
    assert asked == [] and errors == []
