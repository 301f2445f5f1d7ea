"""Plots: every kind is written to a file, readable, of a sane size, with labelled axes."""

from __future__ import annotations

import argparse
import csv
import json
import math

import pytest

from hardware import ConfigError, load_system
from sim.cli.plot import add_parser, run
from sim.cost.simulate import simulate
from sim.engine.events import StageWork, run_pipeline
from sim.plots import charts as plots
from workloads import Decode


def _png_size(path) -> tuple[int, int]:
    """(height, width) of a PNG read back by matplotlib."""
    from matplotlib.image import imread

    image = imread(path)
    return image.shape[0], image.shape[1]


def _labelled(fig) -> None:
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()


def _sane_png(path) -> None:
    assert path.exists()
    height, width = _png_size(path)
    assert 400 <= width <= 3000 and 300 <= height <= 3000
    assert 5_000 < path.stat().st_size < 400_000


def _sweep_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def decode_run(llama7b_module):
    system = load_system("h100-sxm", 1)
    return simulate(Decode(model=llama7b_module, batch=8, context=1024), system), system


@pytest.fixture(scope="module")
def llama7b_module():
    from workloads import load_model

    return load_model("llama-2-7b")


@pytest.fixture
def sweep_rows() -> list[dict]:
    # a 3 x 2 grid of (bw, batch), each twice (a third axis, 'flops', varies), one failed point
    rows = []
    for bw in (1.0, 2.0, 4.0):
        for batch in (1, 8):
            for flops in (100.0, 200.0):
                rows.append({"bw": bw, "batch": batch, "flops": flops,
                             "tokens_per_s": bw * batch + flops / 100, "status": "ok", "error": ""})  # fmt: skip
    rows.append({"bw": 8.0, "batch": 1, "flops": 100.0, "tokens_per_s": "", "status": "failed",
                 "error": "does not fit"})  # fmt: skip
    return rows


# ---- roofline ------------------------------------------------------------------------------


def test_roofline_png_has_ceilings_and_every_op_under_its_roof(decode_run, tmp_path):
    result, system = decode_run
    out = tmp_path / "roofline.png"
    fig = plots.roofline_chart(result, system, out)
    _sane_png(out)
    ax = fig.axes[0]
    assert "intensity" in ax.get_xlabel() and "FLOP/s" in ax.get_ylabel()
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    texts = " ".join(t.get_text() for t in ax.texts)
    # a ceiling per memory level and the workload dtype's peak and sustained rate
    for level in system.chip.memory:
        assert level.name in texts
    assert "bf16/fp16 peak" in texts and "bf16 sustained" in texts
    # every non-collective op with FLOPs and main-memory bytes is one point
    drawn = sum(len(c.get_offsets()) for c in ax.collections)
    expected = sum(1 for c in result.costs
                   if c.op.kind != "collective" and c.op.flops > 0 and c.main_bytes > 0)  # fmt: skip
    assert drawn == expected > 5
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"attention", "mlp"}
    # no op above its roof: time >= main bytes / achievable bandwidth and >= FLOPs / peak
    bw = system.chip.main_memory.achievable_bytes_per_s
    peak = system.chip.peak("bf16")
    for x, y in ax.collections[0].get_offsets():
        assert y <= min(bw * x, peak) * (1 + 1e-9)


def test_roofline_svg_is_text_with_its_labels(decode_run, tmp_path):
    result, system = decode_run
    out = tmp_path / "roofline.svg"
    plots.roofline_chart(result, system, out, title="my title")
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "my title" in text and "arithmetic intensity" in text


def test_an_unsupported_suffix_is_a_config_error_naming_the_flag(decode_run, tmp_path):
    result, system = decode_run
    with pytest.raises(
        ConfigError, match=r"-o/--output .*unsupported suffix '\.jpg'.*\.png or \.svg"
    ):
        plots.roofline_chart(result, system, tmp_path / "chart.jpg")
    assert not (tmp_path / "chart.jpg").exists()


# ---- metric vs an axis ---------------------------------------------------------------------


def test_metric_vs_batch_draws_one_line_per_chip(tmp_path):
    series = plots.decode_batch_series("llama-2-7b", ["h100-sxm", "a100-sxm-80gb"], [1, 4, 16],
                                       metric="mfu", context=512)  # fmt: skip
    assert list(series) == ["h100-sxm", "a100-sxm-80gb"]
    for xs, ys in series.values():
        assert xs == [1, 4, 16]
        assert all(0 < y <= 1 for y in ys) and ys == sorted(ys)  # MFU grows with the batch
    out = tmp_path / "batch.png"
    fig = plots.metric_vs_axis(series, out, x_label="batch", y_label="MFU", logx=True)
    _sane_png(out)
    _labelled(fig)
    assert len(fig.axes[0].get_lines()) == 2


def test_a_batch_that_does_not_fit_is_nan_and_ends_the_line():
    # llama-2-7b: 13.5 GB of weights + 0.5 MB of KV per token; 1024 x 4096 tokens = 2 TB
    series = plots.decode_batch_series("llama-2-7b", ["h100-sxm"], [1, 1024], context=4096)
    ys = series["h100-sxm"][1]
    assert ys[0] > 0 and math.isnan(ys[1])


def test_unknown_metric_is_a_config_error():
    with pytest.raises(ConfigError, match="--metric must be one of mfu, time, tokens_per_s"):
        plots.decode_batch_series("llama-2-7b", ["h100-sxm"], [1], metric="speed")


# ---- sweep heatmap -------------------------------------------------------------------------


def test_heatmap_from_csv_takes_the_best_point_per_cell_and_says_so(sweep_rows, tmp_path):
    src = tmp_path / "sweep.csv"
    _sweep_csv(src, sweep_rows)
    out = tmp_path / "heat.png"
    fig = plots.sweep_heatmap(src, "bw", "batch", "tokens_per_s", out)
    _sane_png(out)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("bw", "batch")
    grid = ax.images[0].get_array()
    # cell (bw 4, batch 8): max over flops of 4 x 8 + flops/100 = 32 + 2 = 34
    assert grid.shape == (2, 3) and grid[1, 2] == 34.0
    assert "max of up to 2 points per cell" in ax.get_title()
    assert "1 failed points skipped" in ax.get_title()


def test_heatmap_of_a_time_takes_the_minimum_and_accepts_rows(sweep_rows, tmp_path):
    rows = [dict(r, time_s=1 / float(r["tokens_per_s"])) for r in sweep_rows if r["status"] == "ok"]
    fig = plots.sweep_heatmap(rows, "bw", "batch", "time_s", tmp_path / "heat.svg")
    assert "min of up to 2" in fig.axes[0].get_title()
    assert fig.axes[0].images[0].get_array()[1, 2] == pytest.approx(1 / 34)


def test_heatmap_unknown_column_names_the_flag_and_the_columns(sweep_rows, tmp_path):
    with pytest.raises(
        ConfigError, match=r"--metric 'mfu': no such column; choose one of bw, batch"
    ):
        plots.sweep_heatmap(sweep_rows, "bw", "batch", "mfu", tmp_path / "h.png")


# ---- Pareto --------------------------------------------------------------------------------


def test_pareto_front_by_hand():
    # (1,5) (2,4) (4,1) trade off; (2,3) is beaten by (2,4), (1,1) by all; (4,1) twice stays twice
    points = [(1, 5), (2, 4), (2, 3), (4, 1), (1, 1), (4, 1), (float("nan"), 9)]
    assert plots.pareto_front(points) == [0, 1, 3, 5]
    # minimising both: (1,1) beats everything
    assert plots.pareto_front(points, (False, False)) == [4]
    # maximise x, minimise y: (4,1) twice
    assert plots.pareto_front(points, (True, False)) == [3, 5]
    # equal x, larger y wins; equal y, larger x wins
    assert plots.pareto_front([(3, 1), (3, 2), (1, 2)]) == [1]
    assert plots.pareto_front([]) == []


def test_pareto_plot_returns_the_frontier_rows(tmp_path):
    rows = [{"chip": c, "per_w": x, "per_usd": y} for c, x, y in
            (("a", 1, 5), ("b", 2, 4), ("c", 2, 3), ("d", 4, 1))]  # fmt: skip
    out = tmp_path / "pareto.png"
    front, fig = plots.pareto_frontier(rows, "per_w", "per_usd", out, label="chip")
    assert [r["chip"] for r in front] == ["a", "b", "d"]
    _sane_png(out)
    _labelled(fig)
    assert "per_w" in fig.axes[0].get_xlabel()


# ---- timeline ------------------------------------------------------------------------------


def _small_timeline():
    # two stages, 1F1B over 4 micro-batches: F 1 ms, B 2 ms, p2p 0.1 ms, a 0.5 ms grad sync
    work = StageWork(forward=(1e-3,), backward=(2e-3,), grad_sync=(5e-4,), layers=(2,),
                     optimizer=2e-4)  # fmt: skip
    return run_pipeline([work, work], 4, 1e-4, trace=True)


def test_timeline_gantt_has_a_row_per_stage_and_stream(tmp_path):
    timeline = _small_timeline()
    out = tmp_path / "gantt.png"
    fig = plots.timeline_gantt(timeline, out)
    _sane_png(out)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (ms)" and ax.get_ylabel()
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows[0] == "pipeline stage 0 · compute" and len(rows) == 6
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"forward", "backward", "bubble (idle)", "pipeline", "data-parallel"} <= legend


def test_timeline_from_a_saved_trace_file(tmp_path):
    trace = tmp_path / "trace.json"
    _small_timeline().write_trace(trace)
    out = tmp_path / "gantt.svg"
    plots.timeline_gantt(trace, out)
    assert "<svg" in out.read_text()


def test_a_timeline_without_events_says_how_to_get_them(tmp_path):
    work = StageWork(forward=(1e-3,), backward=(2e-3,))
    with pytest.raises(ConfigError, match="trace=True"):
        plots.timeline_gantt(run_pipeline([work], 2), tmp_path / "g.png")


# ---- the plot command ----------------------------------------------------------------------


def _plot(argv: list[str], capsys) -> dict:
    parser = argparse.ArgumentParser(prog="roofsim")
    add_parser(parser.add_subparsers(dest="command", required=True))
    assert run(parser.parse_args(["plot", *argv, "--json"])) == 0
    return json.loads(capsys.readouterr().out)


def test_plot_command_roofline_and_timeline(tmp_path, capsys):
    out = tmp_path / "r.png"
    info = _plot(["roofline", "--model", "llama-2-7b", "--chip", "h100-sxm", "--kind", "prefill",
                  "--prompt", "256", "-o", str(out)], capsys)  # fmt: skip
    assert info["plot"] == "roofline" and 0 < info["mfu"] <= 1 and out.exists()
    trace = tmp_path / "t.json"
    out = tmp_path / "t.svg"
    info = _plot(["timeline", "--model", "llama-2-7b", "--chip", "h100-sxm", "--chips", "2",
                  "--pp", "2", "--global-batch", "4", "--seq", "512", "--trace", str(trace),
                  "-o", str(out)], capsys)  # fmt: skip
    assert info["step_time_s"] > 0 and out.exists() and trace.exists()
    info = _plot(["timeline", "--from-trace", str(trace), "-o", str(tmp_path / "t2.png")], capsys)
    assert info["trace"] == str(trace)


def test_plot_command_batch_heatmap_pareto(sweep_rows, tmp_path, capsys):
    info = _plot(["batch", "--model", "llama-2-7b", "--chip", "h100-sxm,a100-sxm-80gb",
                  "--batches", "1,8", "--metric", "tokens_per_s", "-o", str(tmp_path / "b.png")],
                 capsys)  # fmt: skip
    assert set(info["series"]) == {"h100-sxm", "a100-sxm-80gb"}
    src = tmp_path / "sweep.csv"
    _sweep_csv(src, sweep_rows)
    _plot(["heatmap", "--csv", str(src), "--x", "bw", "--y", "batch", "--metric", "tokens_per_s",
           "-o", str(tmp_path / "h.png")], capsys)  # fmt: skip
    info = _plot(["pareto", "--csv", str(src), "--x", "bw", "--y", "tokens_per_s",
                  "--minimize-x", "-o", str(tmp_path / "p.png")], capsys)  # fmt: skip
    # cheapest bandwidth first: bw 1 reaches 10, bw 2 reaches 18, bw 4 reaches 34
    assert [(r["bw"], r["tokens_per_s"]) for r in info["frontier"]] == [
        ("1.0", "10.0"), ("2.0", "18.0"), ("4.0", "34.0")]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["heatmap", "--csv", "S", "--x", "nope", "--y", "batch", "--metric", "tokens_per_s",
          "-o", "h.png"], "--x 'nope': no such column"),
        (["pareto", "--csv", "S", "--x", "bw", "--y", "batch", "-o", "p.pdf"],
         "unsupported suffix '.pdf'"),
        (["heatmap", "--csv", "missing.csv", "--x", "bw", "--y", "batch", "--metric", "m",
          "-o", "h.png"], "--csv missing.csv: cannot read it"),
        (["timeline", "-o", "t.png"], "give --model, --chip and --chips"),
        (["timeline", "--from-trace", "t.json", "--model", "llama-2-7b", "-o", "t.png"],
         "drop --model"),
    ],
)  # fmt: skip
def test_plot_command_bad_input_is_a_one_line_config_error(argv, match, sweep_rows, tmp_path,
                                                           monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    _sweep_csv(tmp_path / "S", sweep_rows)
    parser = argparse.ArgumentParser(prog="roofsim")
    add_parser(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(ConfigError, match=match) as err:
        run(parser.parse_args(["plot", *argv]))
    assert "\n" not in str(err.value)


def test_batch_from_a_sweep_csv_draws_a_line_per_chip_at_the_best_of_the_other_axes(tmp_path):
    # two chips x batch 1, 2 x context 128, 256: --where keeps context 256; without it each
    # point is the best (max throughput) over the contexts
    rows = [
        {"chip": c, "batch": b, "context": ctx, "status": "ok", "error": "",
         "throughput": 10 * b + (ctx // 128) + (100 if c == "b" else 0)}
        for c in ("a", "b") for b in (1, 2) for ctx in (128, 256)
    ]  # fmt: skip
    rows.append({"chip": "a", "batch": 4, "context": 128, "status": "error", "error": "x",
                 "throughput": ""})  # fmt: skip
    src = tmp_path / "sweep.csv"
    _sweep_csv(src, rows)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "b.png"
    args = parser.parse_args(["plot", "batch", "--csv", str(src), "--where", "context=256",
                              "-o", str(out)])  # fmt: skip
    args.json = False
    assert run(args) == 0
    _sane_png(out)
    series = plots.sweep_series(src, "batch", "throughput", "chip")
    assert series == {"a": ([1.0, 2.0], [12.0, 22.0]), "b": ([1.0, 2.0], [112.0, 122.0])}
    mean = plots.sweep_series(src, "batch", "throughput", "chip", reduce="mean")
    assert mean["a"] == ([1.0, 2.0], [11.5, 21.5])
    with pytest.raises(ConfigError, match="--where must be COLUMN=VALUE"):
        plots.sweep_series(src, "batch", "throughput", where=["context"])
    with pytest.raises(ConfigError, match="'ctx': no such column"):
        plots.sweep_series(src, "batch", "throughput", where=["ctx=1"])
