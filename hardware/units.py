"""Parse human units ("3.35 TB/s", "80 GiB", "4 us") into SI base units, once, at the edges."""

from __future__ import annotations

import re

# Decimal prefixes are powers of 1000 ("GB" = 1e9 bytes); binary prefixes powers of 1024 ("GiB").
_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

# unit kind -> accepted base-unit spellings
_KINDS = {
    "bytes": ("B",),
    "bytes_per_s": ("B/s",),
    "flops_per_s": ("FLOP/s", "FLOPS", "OP/s", "OPS"),
    "watts": ("W",),
    "hz": ("Hz",),
}

_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_PATTERN = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-zµ/]*)\s*$")


class UnitError(ValueError):
    """A value whose unit could not be read."""


def parse_quantity(value: str | float | int, kind: str) -> float:
    """Return ``value`` in SI base units of ``kind`` (bytes, bytes_per_s, flops_per_s, s, ...).

    Numbers pass through unchanged (they are already SI). Strings carry a unit:
    ``"3.35 TB/s"`` -> 3.35e12, ``"80 GiB"`` -> 85899345920.0, ``"4 us"`` -> 4e-6.

    Raises UnitError when the string has no number or a unit of another kind.
    """
    if isinstance(value, bool):
        raise UnitError(f"expected a {kind} quantity, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise UnitError(f"expected a {kind} quantity, got {value!r}")
    match = _PATTERN.match(value)
    if not match:
        raise UnitError(f"cannot read {value!r} as a {kind} quantity (e.g. {_example(kind)!r})")
    number, unit = float(match.group(1)), match.group(2)
    if not unit:
        return number
    if kind == "s":
        if unit in _TIME:
            return number * _TIME[unit]
        raise UnitError(f"unknown time unit in {value!r}; use s, ms, us or ns")
    if kind == "fraction":
        raise UnitError(f"{value!r} must be a plain number (a fraction such as 0.9)")
    if kind == "number":
        raise UnitError(f"{value!r} must be a plain number (in the unit the field's name says)")
    for base in _KINDS[kind]:
        if unit.endswith(base):
            prefix = unit[: -len(base)]
            if prefix in _DECIMAL:
                return number * _DECIMAL[prefix]
            if prefix in _BINARY:
                return number * _BINARY[prefix]
            raise UnitError(f"unknown prefix {prefix!r} in {value!r}")
    raise UnitError(f"cannot read {value!r} as a {kind} quantity (e.g. {_example(kind)!r})")


def _example(kind: str) -> str:
    return {
        "bytes": "80 GB",
        "bytes_per_s": "3.35 TB/s",
        "flops_per_s": "989 TFLOP/s",
        "watts": "700 W",
        "hz": "1.83 GHz",
        "s": "4 us",
        "fraction": "0.9",
    }.get(kind, "1.0")


def format_si(value: float, unit: str, digits: int = 3) -> str:
    """Format ``value`` with a decimal SI prefix: ``format_si(3.35e12, "B/s") == "3.35 TB/s"``."""
    if value == 0:
        return f"0 {unit}"
    if unit == "s" and abs(value) >= 1:  # seconds stay seconds: "12.3 s", "1,904 s"
        return f"{value:,.0f} s" if abs(value) >= 10**digits else f"{value:.{digits}g} s"
    for prefix, scale in (
        ("E", 1e18),
        ("P", 1e15),
        ("T", 1e12),
        ("G", 1e9),
        ("M", 1e6),
        ("k", 1e3),
    ):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    if unit == "s":
        for prefix, scale in (("m", 1e-3), ("u", 1e-6), ("n", 1e-9)):
            if abs(value) >= scale:
                return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"
