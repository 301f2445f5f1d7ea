"""A one-line progress bar on stderr for long studies (sweep, validate, claims, design): only on
a terminal (a pipe or a log gets nothing), and only once the run has taken more than a second."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, enabled: bool = True, unit: str = "points") -> None:
        self.total, self.done, self.unit = total, 0, unit
        self.enabled = enabled and sys.stderr.isatty()
        self.start = self.last = time.monotonic()
        self.shown = False
        self.note = ""

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        self.note = note or self.note
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < 1.0 or (now - self.last < 0.2 and self.done < self.total):
            return
        self.last, self.shown = now, True
        frac = self.done / self.total if self.total else 1.0
        rate = self.done / (now - self.start)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        sys.stderr.write(
            f"\r[{'#' * int(30 * frac):<30}] {frac:6.1%}  {self.done:,}/{self.total:,} {self.unit}"
            f"  {rate:,.0f}/s  eta {eta:,.0f} s {self.note} "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
