"""Unit parsing at the edges: decimal vs binary prefixes, times, clear errors."""

import pytest

from hardware.units import UnitError, format_si, parse_quantity


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        ("3.35 TB/s", "bytes_per_s", 3.35e12),
        ("80 GB", "bytes", 80e9),
        ("80 GiB", "bytes", 80 * 2**30),
        ("50MiB", "bytes", 50 * 2**20),
        ("989.4 TFLOP/s", "flops_per_s", 989.4e12),
        ("1978.9 TOP/s", "flops_per_s", 1978.9e12),
        ("4 us", "s", 4e-6),
        ("1.5 ms", "s", 1.5e-3),
        ("700 W", "watts", 700.0),
        (0.9, "fraction", 0.9),
        (1e12, "bytes_per_s", 1e12),
    ],
)
def test_parse_quantity_reads_si_and_binary_prefixes(text, kind, expected):
    assert parse_quantity(text, kind) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "kind", "match"),
    [
        ("fast", "bytes_per_s", "cannot read"),
        ("3 TB", "bytes_per_s", "cannot read"),
        ("4 weeks", "s", "unknown time unit"),
        ("3 XB/s", "bytes_per_s", "unknown prefix"),
        (True, "bytes", "expected"),
    ],
)
def test_parse_quantity_rejects_wrong_units(text, kind, match):
    with pytest.raises(UnitError, match=match):
        parse_quantity(text, kind)


def test_format_si_round_trips_readably():
    assert format_si(3.35e12, "B/s") == "3.35 TB/s"
    assert format_si(4e-6, "s") == "4 us"
