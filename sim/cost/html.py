"""The HTML summary a result shows itself as (``_repr_html_``); the report builds on it.

It lives here, beside ``Result``, so that ``sim.cost`` (and ``sim.engine``, which imports it)
can render themselves in a notebook without importing ``sim.plots``, a higher layer; the full
page (``sim/plots/report.py``) puts this same fragment first. Plain strings, no dependencies:
every text from outside (a model name, a chip file's path, an override) goes through
``html.escape``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from hardware.units import format_si

#: one summary item: (label, value with its unit, a note under it; "" for none)
Item = tuple[str, str, str]

SUMMARY_CSS = """
.rs-summary{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a}
.rs-summary .rs-title{font-size:1rem;font-weight:600;margin:.2rem 0 .6rem}
.rs-summary dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));
gap:.5rem;margin:0}
.rs-summary .rs-card{border:1px solid #c9ced6;border-radius:6px;padding:.45rem .7rem;
background:#f7f8fa}
.rs-summary dt{font-size:.78rem;color:#4a4f57;margin:0}
.rs-summary dd{margin:0;font-size:1.1rem;font-weight:600;font-variant-numeric:tabular-nums}
.rs-summary dd.rs-note{font-size:.78rem;font-weight:400;color:#4a4f57}
.rs-summary .rs-bad{color:#a40000}
"""


def esc(value: object) -> str:
    """``value`` as text safe inside an element or a quoted attribute."""
    return html.escape(str(value), quote=True)


def summary_fragment(
    title: str, items: Sequence[Item], *, heading: str = "h2", style: bool = True
) -> str:
    """A titled grid of cards, one per item; ``style`` embeds the (class-scoped) CSS so the
    fragment stands alone in a notebook. A value starting with "does not fit" is marked."""
    cards = []
    for label, value, note in items:
        bad = ' class="rs-bad"' if value.startswith("does not fit") else ""
        cards.append(
            f'<div class="rs-card"><dt>{esc(label)}</dt><dd{bad}>{esc(value)}</dd>'
            + (f'<dd class="rs-note">{esc(note)}</dd>' if note else "")
            + "</div>"
        )
    css = f"<style>{SUMMARY_CSS}</style>" if style else ""
    return (
        f'<section class="rs-summary" aria-label="summary">{css}'
        f'<{heading} class="rs-title">{esc(title)}</{heading}>'
        f"<dl>{''.join(cards)}</dl></section>"
    )


def percent(fraction: float | None) -> str:
    """A fraction as a percentage with one decimal ("-" for None)."""
    return "-" if fraction is None else f"{fraction:.1%}"


def rate_text(value: float) -> str:
    """A throughput with three significant figures however small: 1,234.5 / 2.81 / 0.000812."""
    return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"


def on_chips(n: int) -> str:
    """ "on 1 chip" / "on 8 chips"."""
    return f"on {n} chip{'s' if n != 1 else ''}"


def shares_note(by: Mapping[str, float], total_s: float) -> str:
    """ "memory 94%, overhead 6% of the time": each resource's share, largest first."""
    ordered = sorted(by.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / total_s:.0%}" for k, v in ordered if v > 0) + " of the time"


def memory_item(required_bytes: float, capacity_bytes: float, parts: str) -> Item:
    """The memory card: what one chip needs against what it holds, and of what."""
    need, have = format_si(required_bytes, "B"), format_si(capacity_bytes, "B")
    if required_bytes <= capacity_bytes:
        return ("memory per chip", f"{need} of {have}", f"fits: {parts}")
    over = format_si(required_bytes - capacity_bytes, "B")
    return ("memory per chip", f"does not fit: {need} of {have}", f"{over} over: {parts}")
