"""The HTML report: one self-contained page per run or study, charts as inline SVG, no request.

Every page opens with the summary (``sim.cost.html``, the fragment a result shows in a notebook),
then the inputs as given (every ``--set`` override, the runtime), then what the study needs:
the roofline with each op placed, time by binding resource and by op family, a sortable per-op
table, memory against capacity; the pipeline timeline of a training step; latency percentiles
and requests/KV occupancy over time for serving; a row per chip or point with heatmap and Pareto
charts for compare and sweep; the error table (test and fit rows, bias) for validate; the tables
of plan and claims. The footer names the roofsim version and the command that made the page.

Self-contained means the page asks nothing of the network: CSS and the sorting script (a dozen
lines) are inline, charts are SVG in the page (matplotlib's SVG backend, text kept as text; a
chart with very many marks embeds those marks as a PNG inside its SVG), fonts are the reader's
own. Every text from outside (a model name, a path, an override) is escaped. matplotlib is
imported only when a chart is drawn, so ``import sim`` and the CLI start without it.
"""

from __future__ import annotations

import io
import math
import os
import re
import shlex
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hardware.chip import ConfigError, System
from hardware.units import format_si
from sim import version
from sim.cost.html import SUMMARY_CSS, Item, esc, percent, rate_text, summary_fragment

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: a table cell: text, or (text, sort key): a number sorts by its value, not its text
Cell = str | tuple[str, float | None]

#: the most rows a table shows (a million-point sweep is in its CSV, not the page)
MAX_ROWS = 1000
#: an SVG chart larger than this is drawn again with its marks as an embedded image
SVG_BUDGET_BYTES = 400_000

_CSS = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;
background:#fff;margin:0 auto;padding:1rem 1.5rem 3rem;max-width:76rem;line-height:1.4}
h1{font-size:1.45rem;margin:.4rem 0 .2rem}
h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid #d5d9e0;padding-bottom:.2rem}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
p.lead{color:#4a4f57;margin:.1rem 0 1rem}
nav ul{list-style:none;padding:0;margin:.4rem 0 1rem;display:flex;flex-wrap:wrap;gap:.3rem 1rem}
nav a{color:#0b4f9c}
figure{margin:.6rem 0 1.2rem}
figcaption{font-size:.85rem;color:#4a4f57;margin-top:.2rem}
svg.chart{display:block;width:100%;height:auto}
.scroll{overflow-x:auto;max-width:100%}
.cols{display:flex;flex-wrap:wrap;gap:0 2.5rem;align-items:flex-start}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0 1rem}
caption{text-align:left;font-weight:600;padding:.2rem 0 .4rem}
th,td{border-bottom:1px solid #e2e5ea;padding:.25rem .55rem;text-align:left;vertical-align:top}
td{max-width:34rem;overflow-wrap:anywhere}
th[scope=row]{white-space:nowrap}
thead th{background:#eef1f5;position:sticky;top:0;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th button{font:inherit;font-weight:600;background:none;border:0;padding:0;cursor:pointer;
color:inherit;text-align:inherit}
th button::after{content:" \\2195";color:#8a9099}
th[aria-sort=ascending] button::after{content:" \\2191";color:#1a1a1a}
th[aria-sort=descending] button::after{content:" \\2193";color:#1a1a1a}
th button:focus-visible{outline:2px solid #0b4f9c}
pre{background:#f7f8fa;border:1px solid #e2e5ea;padding:.6rem;overflow-x:auto;font-size:.8rem}
.note{font-size:.85rem;color:#4a4f57}
.bad{color:#a40000;font-weight:600}
footer{margin-top:3rem;border-top:1px solid #d5d9e0;padding-top:.6rem;font-size:.85rem;
color:#4a4f57}
footer code{font-size:.8rem;word-break:break-all}
@media print{
body{max-width:none;padding:0;font-size:10pt}
nav{display:none}
h2{break-after:avoid}
figure,svg.chart{break-inside:avoid}
thead th{position:static}
th button::after{content:none}
.scroll{overflow:visible}
a{color:inherit;text-decoration:none}
}
"""

# Sorts a table.sortable by the clicked column: cells with data-v by number (empty last),
# others by text; a second click reverses. aria-sort tells assistive technology the order.
_JS = """
(function(){
function key(c){var v=c.getAttribute('data-v');if(v===null)return c.textContent.trim();
return v===''?null:parseFloat(v);}
function cmp(a,b){if(a===b)return 0;if(a===null)return 1;if(b===null)return -1;
if(typeof a==='number'&&typeof b==='number')return a-b;
return String(a).localeCompare(String(b),undefined,{numeric:true});}
document.querySelectorAll('table.sortable').forEach(function(t){
var ths=t.tHead.rows[0].cells;
Array.prototype.forEach.call(ths,function(th,i){var b=th.querySelector('button');if(!b)return;
b.addEventListener('click',function(){
var asc=th.getAttribute('aria-sort')!=='ascending';
Array.prototype.forEach.call(ths,function(o){o.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');
var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
rows.sort(function(x,y){var ka=key(x.cells[i]),kb=key(y.cells[i]);
if(ka===null||kb===null)return cmp(ka,kb);return asc?cmp(ka,kb):cmp(kb,ka);});
rows.forEach(function(r){body.appendChild(r);});});});});
})();
"""


# ---- files --------------------------------------------------------------------------------------


def check_html_path(path: str | Path) -> Path:
    """``path`` as a Path if a report can be written there; raises ConfigError (one line:
    ``--html: cannot write PATH: why``) before a long study runs, not after."""
    p = Path(path)
    why = ""
    if p.is_dir():
        why = "it is a folder; give a file name such as report.html"
    elif not p.parent.is_dir():
        why = f"no folder {str(p.parent)!r}; create it first"
    elif not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        why = "permission denied"
    if why:
        raise ConfigError(f"--html: cannot write {path}: {why}")
    return p


def write_html(path: str | Path, text: str) -> None:
    """Write the page (UTF-8); an OSError becomes the one-line ConfigError of ``--html``."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--html: cannot write {path}: {exc.strerror or exc}") from None


# ---- page and pieces ----------------------------------------------------------------------------


def command_line(argv: Sequence[str] | None) -> str:
    """The shell command that makes the page again (``roofsim`` and the arguments, quoted)."""
    return shlex.join(["roofsim", *argv]) if argv is not None else ""


def page(title: str, lead: str, sections: Sequence[tuple[str, str, str]],
         command: Sequence[str] | None = None) -> str:  # fmt: skip
    """The whole document: ``sections`` are (id, heading, body HTML), listed in a nav."""
    nav = "".join(f'<li><a href="#{esc(i)}">{esc(h)}</a></li>' for i, h, _ in sections if h)
    body = "".join(
        f'<section id="{esc(i)}" aria-labelledby="{esc(i)}-h"><h2 id="{esc(i)}-h">{esc(h)}</h2>'
        f"{b}</section>"
        if h
        else f'<div id="{esc(i)}">{b}</div>'
        for i, h, b in sections
    )
    cmd = command_line(command)
    made = (
        f"<p>Made by roofsim {esc(version())} with:</p><p><code>{esc(cmd)}</code></p>"
        if cmd
        else f"<p>Made by roofsim {esc(version())} from Python.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}{SUMMARY_CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><p class="lead">{esc(lead)}</p>'
        f'<nav aria-label="sections"><ul>{nav}</ul></nav></header>'
        f"<main>{body}</main><footer>{made}</footer><script>{_JS}</script></body></html>\n"
    )


def table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[Cell]], *,
          sortable: bool = True, note: str = "") -> str:  # fmt: skip
    """A table with column headers (``scope="col"``) and a caption; ``sortable``: a header
    click sorts the rows (numbers by value). The first cell of a row is its header."""
    head = "".join(
        f'<th scope="col">{"<button type=button>" if sortable else ""}{esc(h)}'
        f"{'</button>' if sortable else ''}</th>"
        for h in headers
    )
    out = []
    for row in rows:
        cells = []
        for j, cell in enumerate(row):
            tag = "th" if j == 0 else "td"
            scope = ' scope="row"' if j == 0 else ""
            if isinstance(cell, tuple):
                text, value = cell
                v = "" if value is None or not math.isfinite(value) else repr(float(value))
                cells.append(f'<{tag}{scope} class="num" data-v="{v}">{esc(text)}</{tag}>')
            else:
                cells.append(f"<{tag}{scope}>{esc(cell)}</{tag}>")
        out.append(f"<tr>{''.join(cells)}</tr>")
    cls = ' class="sortable"' if sortable else ""
    hint = " (select a column header to sort)" if sortable else ""
    return (
        f'<div class="scroll"><table{cls}><caption>{esc(caption)}{esc(hint)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(out)}</tbody></table></div>"
        + (f'<p class="note">{esc(note)}</p>' if note else "")
    )


def pairs_table(caption: str, pairs: Iterable[tuple[str, str]]) -> str:
    """A two-column table of (field, value), not sortable."""
    return table(caption, ("field", "value"), [(k, v) for k, v in pairs], sortable=False)


def num(value: float | None, unit: str) -> Cell:
    """A number with an SI prefix and its unit, sorting by value ("-" for None)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ("-", None)
    return (format_si(value, unit), value)


def pct(value: float | None, signed: bool = False) -> Cell:
    if value is None:
        return ("-", None)
    return (f"{value:+.1%}" if signed else f"{value:.1%}", value)


def plain(value: float | None, fmt: str = ".3g", unit: str = "") -> Cell:
    if value is None or not math.isfinite(value):
        return ("-", None)
    return (f"{format(value, fmt)}{(' ' + unit) if unit else ''}", value)


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


_FIGURES = iter(range(1, 1 << 30))


def figure_svg(fig: Figure, label: str) -> str:
    """A matplotlib figure as an inline ``<svg>``: text kept as text, no XML prolog or
    metadata, ids made unique in the page, ``role="img"`` with ``label`` as its name and
    ``<title>``. Over SVG_BUDGET_BYTES, its collections (scatter, bars) become an image inside."""
    import matplotlib

    def render() -> str:
        buf = io.StringIO()
        with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "roofsim"}):
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                     "Format": None, "Type": None})  # fmt: skip
        return buf.getvalue()

    text = render()
    if len(text) > SVG_BUDGET_BYTES:
        for ax in fig.axes:
            for artist in [*ax.collections, *ax.patches, *ax.lines]:
                artist.set_rasterized(True)
        text = render()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    n = next(_FIGURES)
    text = re.sub(r'(\bid="|url\(#|href="#)', rf"\1f{n}-", text)
    width = re.search(r'viewBox="0 0 ([\d.]+) ', text)
    max_px = f"max-width:{float(width.group(1)) * 4 / 3:.0f}px" if width else ""
    text = re.sub(
        r"<svg ([^>]*?)\bwidth=\"[^\"]*\" height=\"[^\"]*\"",
        rf'<svg \1class="chart" role="img" aria-label="{esc(label)}" style="{max_px}"',
        text,
        count=1,
    )
    head_end = text.index(">") + 1
    return text[:head_end] + f"<title>{esc(label)}</title>" + text[head_end:]


def bar_svg(label: str, bars: Sequence[tuple[str, float, str]], *, colour: str = "#3b6ea8",
            max_value: float | None = None) -> str:  # fmt: skip
    """Horizontal bars (name, value, value as text with its unit), drawn by hand: small, and
    each bar carries its own ``<title>``."""
    if not bars:
        return ""
    width, left, right, row = 760, 190, 170, 24
    height = row * len(bars) + 10
    top = max_value or max(v for _, v, _ in bars) or 1.0
    span = width - left - right
    parts = []
    for i, (name, value, text) in enumerate(bars):
        y = 5 + i * row
        w = max(0.0, value) / top * span
        parts.append(
            f"<g><title>{esc(name)}: {esc(text)}</title>"
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{esc(_clip(name, 28))}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" fill="{colour}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 16}">{esc(text)}</text></g>'
        )
    return (
        f'<svg class="chart" role="img" aria-label="{esc(label)}" viewBox="0 0 {width} {height}" '
        f'style="max-width:{width}px" font-size="13" font-family="system-ui,sans-serif" '
        f'fill="#1a1a1a"><title>{esc(label)}</title>{"".join(parts)}</svg>'
    )


_PART_COLOURS = ("#3b6ea8", "#e08a2c", "#4e9a4e", "#b8455a", "#7c5ea8", "#8c6d46", "#5aa9b5")


def stacked_svg(label: str, parts: Sequence[tuple[str, float]], capacity: float) -> str:
    """One bar of what a chip holds, part by part, against a line at its capacity."""
    width, left, height = 720, 10, 86
    total = sum(v for _, v in parts)
    scale = (width - 2 * left) / max(total, capacity, 1.0)
    x = float(left)
    out, legend = [], []
    for i, (name, value) in enumerate(parts):
        colour = _PART_COLOURS[i % len(_PART_COLOURS)]
        w = value * scale
        text = f"{name} {format_si(value, 'B')}"
        out.append(f'<rect x="{x:.1f}" y="10" width="{w:.1f}" height="28" fill="{colour}">'
                   f"<title>{esc(text)}</title></rect>")  # fmt: skip
        legend.append((colour, text))
        x += w
    cx = left + capacity * scale
    out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="4" y2="44" stroke="#a40000" '
               f'stroke-width="2"><title>capacity {esc(format_si(capacity, "B"))}</title></line>')  # fmt: skip
    lx = left
    for colour, text in legend:
        out.append(f'<rect x="{lx}" y="56" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{lx + 14}" y="66">{esc(text)}</text>')  # fmt: skip
        lx += 14 + 7 * len(text) + 16
    cap_text = f"capacity {format_si(capacity, 'B')}"
    anchor = "end" if cx > width / 2 else "start"
    out.append(f'<text x="{cx + (-4 if anchor == "end" else 4):.1f}" y="82" '
               f'text-anchor="{anchor}" fill="#a40000">{esc(cap_text)}</text>')  # fmt: skip
    return (
        f'<svg class="chart" role="img" aria-label="{esc(label)}" viewBox="0 0 {width} {height}" '
        f'style="max-width:{width}px" font-size="12" font-family="system-ui,sans-serif" '
        f'fill="#1a1a1a"><title>{esc(label)}</title>{"".join(out)}</svg>'
    )


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _chart(make: Callable[[], Figure], label: str, caption: str) -> str:
    """A matplotlib chart as a figure, or a note saying why it could not be drawn."""
    try:
        fig = make()
    except ConfigError as exc:
        return f'<p class="note">{esc(caption)}: not drawn ({esc(exc)}).</p>'
    return figure(figure_svg(fig, label), caption)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v) or "none"
    return "-" if v is None else str(v)


# ---- a single run: decode, prefill, dit, train, serve -------------------------------------------


def _system_of(result: Any) -> System | None:
    """The System a result names (its chip preset or file, chips and overrides), or None."""
    from hardware import load_system

    s = result.system
    try:
        return load_system(s["chip"], s["n_chips"], list(s.get("overrides") or []))
    except (ConfigError, KeyError, OSError):
        return None


def _inputs(result: Any, system: System | None) -> str:
    """The workload and system as given: every workload field, every override, the chip."""
    w, s = result.workload, result.system
    out = pairs_table("Workload", [(k, _value(v)) for k, v in w.items() if k != "sample_unit"])
    overrides = list(s.get("overrides") or [])
    rows = [
        ("system", str(s.get("name", ""))),
        ("chip", str(s.get("chip", ""))),
        ("chips", str(s.get("n_chips", ""))),
        ("chips per node", str(s.get("chips_per_node", "-"))),
        ("overrides (--set)", ", ".join(overrides) if overrides else "none"),
    ]
    if "runtime" in w:
        rows.append(("runtime (--runtime)", str(w["runtime"])))
    out += pairs_table("System", rows)
    if system is not None:
        out += _chip_table(system)
    return f'<div class="cols">{out}</div>'


def _chip_table(system: System) -> str:
    """The chip as simulated (after overrides): peaks, memory levels, power."""
    chip = system.chip
    rows = [("name", chip.full_name or chip.name)]
    rows += [(f"peak {d}", format_si(v, "FLOP/s")) for d, v in chip.peak_flops_per_s.items()]
    rows.append(("vector peak", format_si(chip.vector_flops_per_s, "FLOP/s")))
    for lvl in chip.memory:
        frac = f" (achievable {lvl.achievable_fraction:g})" if lvl.achievable_fraction < 1 else ""
        rows.append((f"{lvl.name}", f"{format_si(lvl.capacity_bytes, 'B')} at "
                     f"{format_si(lvl.bandwidth_bytes_per_s, 'B/s')}{frac}"))  # fmt: skip
    if chip.tdp_watts:
        rows.append(("TDP", f"{chip.tdp_watts:g} W"))
    if chip.hypothetical:
        rows.append(("hypothetical", "yes: a design, not a product"))
    return pairs_table("Chip as simulated (overrides applied)", rows)


def _roofline(result: Any, system: System | None, label_prefix: str = "") -> str:
    if system is None:
        return ('<p class="note">Roofline not drawn: the chip this result names could not be '
                "loaded again; pass the System to the report.</p>")  # fmt: skip
    from sim.plots.charts import roofline_chart

    ops = result.op_rows()
    top = max(ops, key=lambda r: r["time_s"], default=None)
    chip = system.chip
    dtype = result.workload.get("dtype", "bf16")
    label = (
        f"{label_prefix}Roofline, log-log: each op at its arithmetic intensity (FLOP per "
        f"main-memory byte) and the FLOP/s one chip achieves on it, marker area by share of "
        f"time, under the {chip.name} ceilings ({dtype} peak "
        f"{format_si(chip.peak(dtype), 'FLOP/s')}, {chip.main_memory.name} "
        f"{format_si(chip.main_memory.achievable_bytes_per_s, 'B/s')} achievable)."
        + (f" Most time: {top['name']}, {top['share']:.1%}, {top['bound']}-bound." if top else "")
    )
    return _chart(lambda: roofline_chart(result, system, None), label,
                  "Roofline: each op placed by arithmetic intensity and achieved FLOP/s per chip. "
                  "Collectives and ops without FLOPs are not drawn; see the table.")  # fmt: skip


def _time_bars(by: Mapping[str, float], total_s: float, what: str) -> str:
    bars = [(k, v, f"{format_si(v, 's')} ({v / total_s:.1%})")
            for k, v in sorted(by.items(), key=lambda kv: -kv[1]) if v > 0]  # fmt: skip
    label = f"Time by {what}: " + "; ".join(f"{k} {t}" for k, _, t in bars)
    return figure(bar_svg(label, bars), f"Time by {what} (share of the run's time).")


def _result_ops_table(result: Any) -> str:
    rows = sorted(result.op_rows(), key=lambda r: -r["time_s"])
    body = []
    for r in rows:
        mem = sum(r["memory_s"].values()) if "memory_s" in r else None
        bound = r["bound"] + (f" ({r['binding_level']})" if r.get("binding_level") else "")
        body.append([
            r["name"], r["family"], r["kind"], plain(r["count"], "d"), num(r["flops"], "FLOP"),
            num(r["hbm_bytes"], "B"),
            plain(r["intensity"], ".3g", "FLOP/B") if r.get("intensity") is not None else ("-", None),
            num(r["time_s"], "s"), pct(r["share"]), bound,
            num(r.get("compute_s"), "s"), num(mem, "s"), num(r.get("comm_s"), "s"),
            num(r.get("overhead_s"), "s"), pct(r.get("tile_efficiency")),
            num(r.get("energy_j"), "J"),
        ])  # fmt: skip
    headers = ("op", "family", "kind", "count", "FLOPs", "main-memory bytes",
               "intensity (FLOP/B)", "time", "share of time", "bound (level)", "compute time",
               "memory time", "communication time", "overhead time", "tile efficiency",
               "energy")  # fmt: skip
    return table(
        "Per-op results, all instances of each op (largest time first)", headers, body,
        note="Times are the op's total over its count; an op's time is the largest of its "
        "compute, memory and communication times plus overhead (the roofline); energy includes "
        "the idle power over the op's time.",
    )  # fmt: skip


def _train_ops_table(result: Any) -> str:
    body = [[
        r["name"], r["family"], r["kind"], plain(r["count"], "d"), num(r["flops"], "FLOP"),
        num(r["hbm_bytes"], "B"), num(r["time_s"], "s"), pct(r["share"]), r["bound"],
        "yes" if r["recompute"] else "no", pct(r["tile_efficiency"]),
    ] for r in sorted(result.op_rows(), key=lambda r: -r["time_s"])]  # fmt: skip
    headers = ("op", "family", "kind", "count per step", "FLOPs", "main-memory bytes", "time",
               "share of step", "bound", "recomputed", "tile efficiency")  # fmt: skip
    return table(
        f"Per-op results on the critical pipeline stage {result.critical_stage}, one step", headers,
        body,
    )  # fmt: skip


def _memory_levels(system: System | None, required: float, where: str) -> str:
    if system is None:
        return ""
    chip = system.chip
    rows = []
    for lvl in chip.memory:
        need = num(required, "B") if lvl is chip.main_memory else ("-", None)
        rows.append([lvl.name, num(lvl.capacity_bytes, "B"), need,
                     pct(required / lvl.capacity_bytes) if lvl is chip.main_memory else ("-", None),
                     num(lvl.bandwidth_bytes_per_s, "B/s"),
                     plain(lvl.achievable_fraction, ".2f")])  # fmt: skip
    return table(
        "Memory levels per chip", ("level", "capacity", "needed", "used", "bandwidth",
                                   "achievable fraction"), rows, sortable=False,
        note=f"{where} are placed in main memory ({chip.main_memory.name}); the on-chip levels "
        "serve the tiling model's reuse and are not filled by placement.",
    )  # fmt: skip


def run_report(result: Any, system: System | None = None, *,
               command: Sequence[str] | None = None) -> str:  # fmt: skip
    """The page of one run: a ``Result`` (decode, prefill, dit), a ``TrainResult`` or a
    ``ServeResult``. ``system`` is the System it ran on (default: loaded again from the
    result's chip, chips and overrides); ``command`` the CLI arguments, for the footer."""
    if system is None:
        system = _system_of(result)
    kind = result.workload.get("kind", "run")
    summary = summary_fragment("Summary", result.summary_items(), style=False)
    sections = [("summary", "", summary)]
    if hasattr(result, "op_costs"):  # training
        sections += _train_sections(result, system)
    elif hasattr(result, "kv_used"):  # serving
        sections += _serve_sections(result, system)
    else:
        sections += _result_sections(result, system)
    return page(f"roofsim {kind}: {result.workload.get('model', '')} on "
                f"{result.system.get('name', '')}", result.title(), sections, command)  # fmt: skip


def _result_sections(result: Any, system: System | None) -> list[tuple[str, str, str]]:
    m = result.memory
    parts = [("weights", m.weights_bytes), ("KV cache", m.kv_cache_bytes),
             ("activations", m.activation_bytes)]  # fmt: skip
    mem = figure(
        stacked_svg(f"Memory per chip: {format_si(m.required_bytes, 'B')} needed of "
                    f"{format_si(m.capacity_bytes, 'B')}; " + ", ".join(
                        f"{n} {format_si(v, 'B')}" for n, v in parts), parts, m.capacity_bytes),
        "Memory needed per chip against the main memory's capacity (red line).",
    ) + _memory_levels(system, m.required_bytes, "Weights, KV cache and activations")  # fmt: skip
    return [
        ("inputs", "Workload and system as given", _inputs(result, system)),
        ("roofline", "Roofline", _roofline(result, system)),
        ("time", "Where the time goes",
         _time_bars(result.time_by_bound, result.time_s, "binding resource")
         + _time_bars(result.time_by_family, result.time_s, "op family")),
        ("ops", "Per-op table", _result_ops_table(result)),
        ("memory", "Memory against capacity", mem),
    ]  # fmt: skip


def _train_sections(result: Any, system: System | None) -> list[tuple[str, str, str]]:
    from sim.plots.charts import timeline_gantt

    m, b = result.memory, result.breakdown
    parts = [("weights", m.weights_bytes), ("gradients", m.gradient_bytes),
             ("optimizer", m.optimizer_bytes), ("activations", m.activation_bytes),
             ("temporary", m.temporary_bytes)]  # fmt: skip
    mem = figure(
        stacked_svg(f"Memory per chip on pipeline stage {m.stage}: "
                    f"{format_si(m.total_bytes, 'B')} needed of "
                    f"{format_si(result.capacity_bytes, 'B')}", parts, result.capacity_bytes),
        f"Memory needed per chip (pipeline stage {m.stage}, the fullest) against capacity.",
    ) + _memory_levels(system, m.total_bytes, "Weights, gradients, optimizer states and "
                       "activations")  # fmt: skip
    step = result.step_time_s
    breakdown = {"compute": b["compute_s"], "recompute": b["recompute_s"],
                 "pipeline bubble": b["pipeline_bubble_s"], "optimizer": b["optimizer_s"],
                 **{f"exposed {k}": v for k, v in b["communication_s"].items()}}  # fmt: skip
    if result.timeline.events:
        timeline = _chart(lambda: timeline_gantt(result.timeline, None),
                          f"Timeline of one training step ({format_si(step, 's')}): a row per "
                          "pipeline stage and stream; forward, backward, pipeline sends, "
                          "data-parallel reduction and optimizer bars; idle time hatched grey.",
                          "Pipeline timeline of one step (bubble: hatched grey).")  # fmt: skip
    else:
        timeline = ('<p class="note">No timeline: simulate with trace=True '
                    "(the CLI does for --html).</p>")  # fmt: skip
    return [
        ("inputs", "Workload and system as given", _inputs(result, system)),
        ("roofline", "Roofline (critical stage)", _roofline(result, system)),
        ("time", "Where the time goes",
         _time_bars(breakdown, step, "part of the step (critical stage)")
         + _time_bars(result.time_by_bound, sum(result.time_by_bound.values()) or 1.0,
                      "binding resource (critical stage's ops)")
         + _time_bars(result.time_by_family, sum(result.time_by_family.values()) or 1.0,
                      "op family (critical stage)")),
        ("timeline", "Pipeline timeline", timeline),
        ("ops", "Per-op table", _train_ops_table(result)),
        ("memory", "Memory against capacity", mem),
    ]  # fmt: skip


def _serve_sections(result: Any, system: System | None) -> list[tuple[str, str, str]]:
    import numpy as np

    from sim.plots.charts import serving_timeline

    d = result.to_dict(kv_points=0)
    lat = [[name, *(num(d[key][k], "s") for k in ("mean", "p50", "p90", "p99"))]
           for name, key in (("TTFT (time to first token)", "ttft_s"),
                             ("TPOT (time per output token)", "tpot_s"),
                             ("latency (arrival to last token)", "latency_s"))]  # fmt: skip
    latency = table("Latency percentiles over the requests", ("metric", "mean", "p50", "p90",
                                                              "p99"), lat, sortable=False)  # fmt: skip
    chart = _chart(lambda: serving_timeline(result, None),
                   "Serving over time: requests in the system (top) and KV-cache occupancy in "
                   f"percent (bottom) over {format_si(result.end_s, 's')}.",
                   "Requests in the system and KV-cache occupancy over time.")  # fmt: skip
    n = len(result.arrival_s)
    shown = min(n, MAX_ROWS)
    ttft, lat_s = result.ttft, result.latency
    tpot = np.full(n, np.nan)
    many = result.output > 1
    tpot[many] = result.tpot
    rows = [[str(i), num(float(result.arrival_s[i]), "s"), plain(float(result.prompt[i]), ".0f",
             "tokens"), plain(float(result.output[i]), ".0f", "tokens"),
             num(_finite(ttft[i]), "s"), num(_finite(tpot[i]), "s"), num(_finite(lat_s[i]), "s")]
            for i in range(shown)]  # fmt: skip
    requests = table(
        "Requests", ("request", "arrival", "prompt", "output", "TTFT", "TPOT", "latency"), rows,
        note=f"The first {shown} of {n} requests." if shown < n else "",
    )  # fmt: skip
    return [
        ("inputs", "Workload and system as given", _inputs(result, system)),
        ("latency", "Latency percentiles", latency),
        ("timeline", "Queue and KV cache over time", chart),
        ("requests", "Per-request table", requests),
    ]


def _float(v: Any) -> float | None:
    """A finite float from a CSV cell; None for text, empty or non-finite."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# ---- compare ------------------------------------------------------------------------------------


def compare_report(rows: Sequence[Any], *, workload: Mapping[str, Any],
                   sets: Sequence[str] = (), command: Sequence[str] | None = None) -> str:  # fmt: skip
    """The page of ``roofsim compare``: a row per chip, throughput and efficiency charts, the
    same ops side by side on every chip, and each chip's roofline."""
    ran = [r for r in rows if not r.refused]
    items: list[Item] = []
    if ran:
        fastest = max(ran, key=lambda r: r.tokens_per_s)
        items.append(("fastest", fastest.chip, f"{rate_text(fastest.tokens_per_s)} tokens/s on "
                      f"{fastest.n_chips} chip{'s' if fastest.n_chips != 1 else ''}, {format_si(fastest.time_s, 's')}"))  # fmt: skip
        efficient = [r for r in ran if r.tokens_per_j]
        if efficient:
            best = max(efficient, key=lambda r: r.tokens_per_j)
            items.append(("most tokens per joule", best.chip,
                          f"{rate_text(best.tokens_per_j)} tokens/J"))  # fmt: skip
        cheap = [r for r in ran if r.tokens_per_usd]
        if cheap:
            best = max(cheap, key=lambda r: r.tokens_per_usd)
            items.append(("most tokens per dollar", best.chip,
                          f"{rate_text(best.tokens_per_usd)} tokens/$"))  # fmt: skip
        for r in ran:
            items.append((r.chip, f"{rate_text(r.tokens_per_s)} tokens/s",
                          f"MFU {percent(r.mfu)}, MBU {percent(r.mbu)}, {r.bound}-bound"))  # fmt: skip
    refused = [r for r in rows if r.refused]
    if refused:
        items.append(("refused", ", ".join(r.chip for r in refused), "does not fit; see the table"))
    size = ("context", workload.get("context")) if "context" in workload else (
        "prompt", workload.get("prompt"))  # fmt: skip
    title = (f"{workload.get('kind')} {workload.get('model')}, batch {workload.get('batch')}, "
             f"{size[0]} {size[1]}, {workload.get('dtype')}")  # fmt: skip
    body = [[
        r.chip, plain(r.n_chips, "d") if r.n_chips else ("-", None), num(r.time_s, "s"),
        plain(r.tokens_per_s, ",.1f", "tokens/s"), pct(r.mfu), pct(r.mbu), r.bound or "-",
        "yes" if r.fits else "no", num(r.required_bytes, "B"), num(r.capacity_bytes, "B"),
        plain(r.chip_power_w, ".0f", "W"), plain(r.tokens_per_j, ".3g", "tokens/J"),
        plain(r.tokens_per_usd, ",.0f", "tokens/$"), r.refused or "",
    ] for r in rows]  # fmt: skip
    chips_table = table(
        "One row per chip", ("chip", "chips", "time", "throughput", "MFU", "MBU", "bound",
                             "fits", "memory needed per chip", "capacity per chip",
                             "power per chip", "tokens per joule", "tokens per dollar",
                             "refused because"), body,
        note="tokens per dollar: throughput over chips x the preset's cited on-demand price, "
        "where the preset has one; power and tokens per joule: the derived power model.",
    )  # fmt: skip
    bars = [(r.chip, r.tokens_per_s, f"{rate_text(r.tokens_per_s)} tokens/s") for r in ran]
    charts = figure(bar_svg("Throughput per chip type: " + "; ".join(
        f"{c} {t}" for c, _, t in bars), bars), "Throughput (tokens/s over all chips of each "
        "system).") if bars else ""  # fmt: skip
    pareto_rows = [{"chip": r.chip, "tokens_per_s": r.tokens_per_s, "tokens_per_j": r.tokens_per_j}
                   for r in ran if r.tokens_per_j]  # fmt: skip
    if len(pareto_rows) >= 2:
        from sim.plots.charts import pareto_frontier

        charts += _chart(
            lambda: pareto_frontier(pareto_rows, "tokens_per_j", "tokens_per_s", None,
                                    label="chip", title="throughput against energy per token")[1],
            "Pareto chart: each chip's tokens per joule (x) against tokens per second (y); the "
            "chips no other beats on both are joined in red.",
            "Pareto front of throughput and energy efficiency.",
        )  # fmt: skip
    inputs = pairs_table("Workload", [(k, _value(v)) for k, v in workload.items()])
    inputs += pairs_table("Systems", [("chips compared", ", ".join(r.chip for r in rows)),
                                      ("overrides (--set)", ", ".join(sets) or "none")])  # fmt: skip
    sections = [
        ("summary", "", summary_fragment("Summary", items, style=False)),
        ("inputs", "Workload and systems as given", inputs),
        ("chips", "Chip by chip", chips_table + charts),
        ("ops", "Op by op", _ops_side_by_side(ran)),
        ("roofline", "Rooflines", "".join(
            _roofline(r.result, r.system, f"{r.chip}: ") for r in ran if r.result is not None)),
        ("time", "Where the time goes", "".join(
            f"<h3>{esc(r.chip)}</h3>" + _time_bars(r.result.time_by_bound, r.result.time_s,
                                                   "binding resource")
            for r in ran if r.result is not None)),
    ]  # fmt: skip
    return page(f"roofsim compare: {', '.join(r.chip for r in rows)}", title, sections, command)


def _ops_side_by_side(ran: Sequence[Any]) -> str:
    """Each op's time on each chip, and the ratio to the first chip's."""
    results = [(r.chip, r.result) for r in ran if r.result is not None]
    if not results:
        return '<p class="note">No chip ran the workload.</p>'
    times: dict[str, dict[str, float]] = defaultdict(dict)
    bounds: dict[str, dict[str, str]] = defaultdict(dict)
    family: dict[str, str] = {}
    for chip, res in results:
        for row in res.op_rows():
            times[row["name"]][chip] = times[row["name"]].get(chip, 0.0) + row["time_s"]
            bounds[row["name"]][chip] = row["bound"]
            family.setdefault(row["name"], row["family"])
    first = results[0][0]
    headers = ["op", "family"]
    for chip, _ in results:
        headers += [f"time on {chip}", f"bound on {chip}"]
    headers += [f"{chip} / {first}" for chip, _ in results[1:]]
    body = []
    for name in sorted(times, key=lambda n: -times[n].get(first, 0.0)):
        row: list[Cell] = [name, family[name]]
        for chip, _ in results:
            row += [num(times[name].get(chip), "s"), bounds[name].get(chip, "-")]
        base = times[name].get(first)
        for chip, _ in results[1:]:
            t = times[name].get(chip)
            row.append(plain(t / base, ".2f", "x") if t is not None and base else ("-", None))
        body.append(row)
    return table("Per-op time on each chip (largest on the first chip first)", headers, body,
                 note="Each op's total time over its instances, per system; the last columns "
                 f"divide each chip's time by {first}'s (below 1: faster).")  # fmt: skip


# ---- sweep --------------------------------------------------------------------------------------


def sweep_report(spec: Any, rows: Sequence[Mapping[str, str]], *, spec_text: str = "",
                 summary: Any = None, command: Sequence[str] | None = None) -> str:  # fmt: skip
    """The page of ``roofsim sweep``: the spec as given, a row per point (up to MAX_ROWS, the
    best first where there are more), a heatmap over the first two axes and a Pareto front,
    and the best point run again alone: its roofline and per-op table."""

    axes = [a.name for a in spec.axes]
    ok = [r for r in rows if r.get("status") == "ok" and _float(r.get("throughput"))]
    best = max(ok, key=lambda r: float(r["throughput"]), default=None)
    unit = "samples" if spec.kind == "dit" else "tokens"
    items: list[Item] = [
        ("points", f"{len(rows):,}", f"{len(ok):,} ran, {len(rows) - len(ok):,} errors "
         "(do not fit, or a bad value)"),
        ("axes", ", ".join(axes) or "none", f"{spec.kind} {spec.workload.get('model', '')}, "
         f"{spec.mode}"),
    ]  # fmt: skip
    if summary is not None:
        items.append(("run time", format_si(summary.elapsed_s, "s"),
                      f"{summary.points_per_s:,.0f} points/s"))  # fmt: skip
    if best is not None:
        where = ", ".join(f"{a} {best[a]}" for a in axes)
        items.append(("best throughput", f"{rate_text(float(best['throughput']))} {unit}/s",
                      f"point {best['point']}: {where}"))  # fmt: skip
    header = list(rows[0]) if rows else list(spec.header)
    metric_cols = {"time_s": "s", "required_bytes": "B", "energy_j": "J", "avg_power_w": "W"}
    ranked = sorted(ok, key=lambda r: -float(r["throughput"]))
    shown = list(rows) if len(rows) <= MAX_ROWS else ranked[:MAX_ROWS]
    body = []
    for r in shown:
        cells: list[Cell] = []
        for c in header:
            v = r.get(c, "")
            x = _float(v) if c not in ("status", "error", "bound", "fits") else None
            if c in ("mfu", "mbu") and x is not None:
                cells.append(pct(x))
            elif c in metric_cols and x is not None:
                cells.append(num(x, metric_cols[c]))
            elif c == "throughput" and x is not None:
                cells.append(plain(x, ",.1f", f"{unit}/s"))
            elif x is not None:
                cells.append((v, x))
            else:
                cells.append(v)
        body.append(cells)
    note = (f"The {len(shown):,} points of highest throughput of {len(rows):,}; the CSV has every "
            "point." if len(shown) < len(rows) else "")  # fmt: skip
    points = table("One row per point (as in the CSV, units added)", header, body, note=note)
    sections = [
        ("summary", "", summary_fragment("Summary", items, style=False)),
        ("inputs", "Sweep spec as given",
         (f"<pre>{esc(spec_text)}</pre>" if spec_text else "")
         + pairs_table("Spec", [("chip", spec.chip or "(chip axis)"),
                                ("overrides (--set)", ", ".join(spec.sets) or "none"),
                                ("workload", ", ".join(f"{k} {_value(v)}" for k, v in
                                                      spec.workload.items())),
                                ("mode", spec.mode), ("points", f"{spec.n_points:,}")])),
        ("charts", "Heatmap and Pareto front", _sweep_charts(spec, rows, axes, unit)),
        ("points", "Points", points),
    ]  # fmt: skip
    if best is not None:
        sections += _best_point(spec, best)
    return page(f"roofsim sweep: {spec.kind} {spec.workload.get('model', '')}, {spec.n_points:,} "
                "points", f"axes: {', '.join(axes) or 'none'}", sections, command)  # fmt: skip


def _sweep_charts(spec: Any, rows: Sequence[Mapping[str, str]], axes: list[str], unit: str) -> str:
    from sim.plots import charts

    out = ""
    if len(axes) >= 2:
        x, y = axes[-1], axes[-2]
        out += _chart(lambda: charts.sweep_heatmap(rows, x, y, "throughput", None),
                      f"Heatmap of throughput ({unit}/s) over {x} (x) and {y} (y), the best "
                      "point per cell where other axes vary; failed points blank.",
                      f"Throughput over {x} and {y}.")  # fmt: skip
    elif len(axes) == 1:
        x = axes[0]
        out += _chart(lambda: charts.metric_vs_axis(charts.sweep_series(rows, x, "throughput"),
                                                    None, x_label=x, y_label=f"{unit}/s"),
                      f"Throughput ({unit}/s) against {x}.", f"Throughput against {x}.")  # fmt: skip
    has_energy = any(_float(r.get("tokens_per_j")) for r in rows)
    other = ("tokens_per_j", True) if has_energy else ("time_s", False)
    out += _chart(
        lambda: charts.pareto_frontier(rows, other[0], "throughput", None,
                                       maximize=(other[1], True))[1],
        f"Pareto chart: every successful point's {other[0]} (x) against throughput (y); the "
        "points no other beats on both are joined in red.",
        f"Pareto front of throughput and {other[0]}.",
    )  # fmt: skip
    return out


def _best_point(spec: Any, best: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """The best point run alone (``simulate_point``): roofline, time and per-op table."""
    from sim.studies.sweep import simulate_point

    point = int(best["point"])
    try:
        result, system = simulate_point(spec, point)
    except (ConfigError, ValueError) as exc:
        return [("best", f"Best point ({point})", f'<p class="note">{esc(exc)}</p>')]
    total = getattr(result, "time_s", None) or result.step_time_s
    ops = _train_ops_table(result) if hasattr(result, "op_costs") else _result_ops_table(result)
    body = (
        f'<p class="note">Point {point} run again alone: {esc(result.title())}.</p>'
        + summary_fragment(f"Point {point}", result.summary_items(), heading="h3", style=False)
        + _roofline(result, system, f"Point {point}: ")
        + _time_bars(result.time_by_bound, sum(result.time_by_bound.values()) or total,
                     "binding resource")
        + ops
    )  # fmt: skip
    return [("best", f"Best point ({point}): roofline and ops", body)]


# ---- plan, validate, claims ---------------------------------------------------------------------


def plan_report(plan: Any, *, inputs: Mapping[str, Any],
                command: Sequence[str] | None = None) -> str:  # fmt: skip
    """The page of ``roofsim plan``: the demand and SLO, a row per TP degree, the best fleet."""
    d = plan.to_dict()
    best = plan.best
    items: list[Item] = [
        ("demand", f"{d['demand']['mean_rate']:.4g} requests/s mean",
         f"peak x{d['demand']['peak_to_mean']:g} = {d['demand']['peak_rate']:.4g} requests/s, "
         f"~{d['demand']['mean_output_tokens']:.0f} output tokens each"),
        ("SLO", f"p{plan.slo.percentile:g}", ", ".join(
            f"{k} <= {format_si(v, 's')}" for k, v in (("TTFT", plan.slo.ttft_s),
                                                      ("TPOT", plan.slo.tpot_s)) if v is not None)),
    ]  # fmt: skip
    if best is None:
        items.append(("best", "does not fit: no TP degree meets the SLO", ""))
    else:
        c = plan.costs(best)
        items.append(("best", f"{best.chips:,} chip{'s' if best.chips != 1 else ''}",
                      f"{best.replicas:,} {'units' if best.prefill_replicas else 'replicas'} "
                      f"x {best.label} of {plan.chip}"))  # fmt: skip
        if best.at_peak is not None:
            items.append(("MFU at peak", percent(best.at_peak.mfu),
                          f"{percent(best.at_mean.mfu) if best.at_mean else '-'} at mean load"))  # fmt: skip
        if "usd_per_hour" in c:
            items.append(("cost", f"${c['usd_per_hour']:,.0f} per hour",
                          f"${c['usd_per_million_tokens']:.3g} per million output tokens"))  # fmt: skip
        if "joules_per_token" in c:
            items.append(("energy", f"{c['joules_per_token']:.3g} J per output token",
                          f"fleet {format_si(c['fleet_power_w'], 'W')}"))  # fmt: skip
    body = []
    for o in plan.options:
        c = plan.costs(o)
        body.append([
            o.label, plain(o.max_rate_per_replica, ".3g", "requests/s"),
            plain(o.replicas, ",d") if o.chips else ("-", None),
            plain(o.chips, ",d") if o.chips else ("-", None),
            pct(o.at_peak.mfu if o.at_peak else None), pct(o.at_mean.mfu if o.at_mean else None),
            num(o.at_peak.to_dict(kv_points=0)["ttft_s"]["p99"] if o.at_peak else None, "s"),
            num(o.at_peak.to_dict(kv_points=0)["tpot_s"]["p99"] if o.at_peak else None, "s"),
            plain(c.get("usd_per_hour"), ",.0f", "$/h"),
            plain(c.get("usd_per_million_tokens"), ".3g", "$/M tokens"),
            plain(c.get("joules_per_token"), ".3g", "J/token"), o.reason,
        ])  # fmt: skip
    options = table("One row per option: a tensor-parallel degree, or a disaggregated unit of "
                    "P prefill + D decode replicas at that degree (P:D)", (
        "option", "requests/s per replica (or unit) within the SLO", "replicas (or units)",
        "chips", "MFU at peak",
        "MFU at mean", "p99 TTFT at peak", "p99 TPOT at peak", "cost per hour",
        "cost per million tokens", "energy per token", "why not"), body)  # fmt: skip
    bars = [(o.label, float(o.chips), f"{o.chips:,} chips") for o in plan.options if o.chips]
    chart = (figure(bar_svg("Chips needed per option: " + "; ".join(
        f"{n} {t}" for n, _, t in bars), bars), "Chips needed per option (fewer is better).")
        if bars else "")  # fmt: skip
    sections = [
        ("summary", "", summary_fragment("Summary", items, style=False)),
        (
            "inputs",
            "Demand, SLO and serving as given",
            pairs_table("Inputs", [(k, _value(v)) for k, v in inputs.items()]),
        ),
        ("options", "Options", options + chart),
    ]
    if best is not None and best.at_peak is not None:
        sections += [("peak", f"Best option at peak load (one "
                      f"{'unit' if best.prefill_replicas else 'replica'}, {best.label})",
                      summary_fragment("At peak", best.at_peak.summary_items(), heading="h3",
                                       style=False))]  # fmt: skip
    return page(f"roofsim plan: {plan.chip}", "fewest chips meeting the demand and the SLO",
                sections, command)  # fmt: skip


def validate_report(results: Sequence[Any], summary: Sequence[Any], *,
                    inputs: Mapping[str, Any], command: Sequence[str] | None = None) -> str:  # fmt: skip
    """The page of ``roofsim validate``: per kind the median error and bias of the test rows
    (out of sample), of the sourced test rows and of the fit rows (in sample), then every row
    with its mark."""
    items: list[Item] = []
    for s in summary:
        verdict = {True: "pass", False: "FAIL", None: "no verdict"}[s.passed]
        items.append((_kind_label(s), f"{percent(s.median_abs_error)} median |error|"
                      if s.median_abs_error is not None else "no test row simulated",
                      f"bias {_signed(s.median_signed_error)}, {s.test.rows} test rows, "
                      f"bar {percent(s.bar) if s.bar is not None else '-'}: {verdict}"))  # fmt: skip
    kinds = [[
        _kind_label(s), plain(s.rows, "d"), plain(s.test.rows, "d"), pct(s.test.median_abs_error),
        pct(s.test.median_signed_error, True), pct(s.worst_abs_error), plain(s.sourced.rows, "d"),
        pct(s.sourced.median_abs_error), pct(s.sourced.median_signed_error, True),
        plain(s.fit.rows, "d"), pct(s.fit.median_abs_error), pct(s.fit.median_signed_error, True),
        pct(s.bar), {True: "pass", False: "FAIL", None: "-"}[s.passed], s.worst_id,
    ] for s in summary]  # fmt: skip
    kind_table = table("Per kind", (
        "kind", "rows", "test rows (out of sample)", "test |error| (median)", "test bias",
        "worst test |error|", "sourced rows", "sourced |error|", "sourced bias",
        "fit rows (in sample)", "fit |error|", "fit bias", "bar", "verdict", "worst test row"),
        kinds, note="|error|: median absolute relative error; bias: median error signed by speed "
        "(> 0: roofsim predicts faster than measured). test rows: nothing was fitted or chosen "
        "against them (out of sample); fit rows: something was (in sample); sourced: test rows "
        "whose every configuration field is the source's. The bar applies to the test rows.",
    )  # fmt: skip
    body = [[
        r.id, r.kind, "test (out of sample)" if r.use == "test" else "fit (in sample)",
        ", ".join(r.assumed) or "-", r.metric, plain(r.measured, ".4g"),
        plain(r.predicted, ".4g"), pct(r.error, True), pct(r.faster, True),
        r.skipped or "", r.source,
    ] for r in results]  # fmt: skip
    rows_table = table("Every row", ("row", "kind", "use", "assumed fields", "metric",
                                     "measured (metric's unit)", "predicted (metric's unit)",
                                     "error", "faster by", "skipped because", "source"), body)  # fmt: skip
    chart = _chart(lambda: _error_chart(results),
                   "Strip chart of each simulated row's error signed by speed, in percent, per "
                   "kind: circles test rows (out of sample), crosses fit rows (in sample).",
                   "Error signed by speed per row (> 0: predicted faster than measured).")  # fmt: skip
    sections = [
        ("summary", "", summary_fragment("Summary", items, style=False)),
        ("inputs", "Inputs", pairs_table("Inputs", [(k, _value(v)) for k, v in inputs.items()])),
        ("kinds", "Error per kind", kind_table + chart),
        ("rows", "Error table", rows_table),
    ]
    return page("roofsim validate", "error against published measurements, per row and kind",
                sections, command)  # fmt: skip


def _kind_label(s: Any) -> str:
    """A kind's name, or a slice's with its mark (its rows are in their kinds too)."""
    return f"{s.kind} (slice across kinds)" if s.slice else s.kind


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _error_chart(results: Sequence[Any]) -> Figure:
    from matplotlib.figure import Figure

    done = [r for r in results if r.faster is not None]
    if not done:
        raise ConfigError("no row was simulated")
    kinds = list(dict.fromkeys(r.kind for r in done))
    fig = Figure(figsize=(8.0, 3.8), dpi=150)
    ax = fig.add_subplot()
    for use, marker, colour in (("test", "o", "tab:blue"), ("fit", "x", "tab:orange")):
        pts = [(kinds.index(r.kind) + (zlib.crc32(r.id.encode()) % 41 - 20) / 80, 100 * r.faster)
               for r in done if r.use == use]  # fmt: skip
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=16,
                       color=colour, alpha=0.7, label=f"{use} rows")  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(kinds)))
    ax.set_xticklabels(kinds, fontsize=8, rotation=30)
    ax.set_ylabel("error signed by speed (%)")
    ax.grid(True, axis="y", color="0.9", linewidth=0.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def claims_report(claims: Sequence[Any], *, command: Sequence[str] | None = None) -> str:
    """The page of ``roofsim claims``: each claim, what is assumed, what roofsim derives."""
    holds = [c for c in claims if c.verdict.startswith("holds")]
    items: list[Item] = [("claims checked", str(len(claims)),
                          f"{len(holds)} hold, {len(claims) - len(holds)} do not as stated")]  # fmt: skip
    items += [(c.key, c.verdict, c.title) for c in claims]
    body = [[c.key, c.title, c.assumed, c.derived, c.verdict] for c in claims]
    sections = [
        ("summary", "", summary_fragment("Summary", items, style=False)),
        ("claims", "Claims", table("One row per claim",
                                   ("claim", "title", "assumed", "derived", "verdict"), body)),
    ]  # fmt: skip
    return page("roofsim claims", "widely repeated compute claims against derivation", sections,
                command)  # fmt: skip
