"""Rewrite the output under each re-run ``$ roofsim ...`` command of README.md by running it.

    python docs/regen_readme.py [--validation-only]

The commands are those tests/test_docs.py re-runs (README_SKIP lists the ones it does not:
sweep timings, a templated command, plan's 60 s search), and plan's search too, rewritten here
though the tests skip it. A shown line ending in ``...`` keeps
its abbreviation where the new line still starts with what precedes the dots. The validation
table (``roofsim validate --summary --no-fail``) and every prose figure (``<!--fig ...-->``, computed
from validation rows: tests/test_docs.py) are rewritten too; ``--validation-only`` rewrites
only those.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_docs import _blocks, _commands, figures_now, readme_examples, run  # noqa: E402


def main() -> int:
    path = ROOT / "README.md"
    text = path.read_text()
    wanted = {command: compare for command, _, compare in readme_examples(text)}
    # plan's search (~1 min) is rewritten here, though the tests skip it
    for _, body, _ in _blocks(text):
        wanted.update({c: True for c, shown in _commands(body) if shown and "roofsim plan " in c})
    lines = text.splitlines()
    cwd = os.getcwd()
    changed = 0
    if "--validation-only" not in sys.argv[1:]:  # the examples take minutes; the table ~1
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "benchmarks").symlink_to(ROOT / "benchmarks")
            os.chdir(tmp)
            try:
                changed = _rewrite(lines, wanted)
            finally:
                os.chdir(cwd)
    changed += _validation_table(lines)
    text, figures = _figures("\n".join(lines) + "\n")
    if "--validation-only" not in sys.argv[1:]:
        text, scaling = _dit_scaling(text)
        changed += scaling
    path.write_text(text)
    changed += figures
    print(f"README.md: {changed} example(s) rewritten")
    return 0


def _dit_scaling(text: str) -> tuple[str, int]:
    """The HunyuanVideo sequence-parallel table (and its plot) as benchmarks/dit_scaling.py
    prints them now (tests/test_docs.py re-runs the table)."""
    import subprocess

    header = "| chips | Ulysses | speed-up | ring | speed-up |"
    if header not in text:
        print(f"README.md: no DiT scaling table ({header!r}): left alone", file=sys.stderr)
        return text, 0
    script = str(ROOT / "benchmarks" / "dit_scaling.py")
    args = ["--model", "hunyuanvideo", "--chip", "h100-sxm"]
    table = subprocess.run([sys.executable, script, *args, "--markdown"], capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    plot = str(ROOT / "docs" / "dit-scaling-hunyuanvideo-h100.png")
    subprocess.run([sys.executable, script, *args, "--plot", plot], capture_output=True,
                   check=True)  # fmt: skip
    start = text.index(header)
    end = text.find("\n\n", start)
    end = len(text.rstrip("\n")) if end < 0 else end
    return text[:start] + table + text[end:], int(text[start:end] != table)


def _rewrite(lines: list[str], wanted: dict[str, bool]) -> int:
    """Replace, in place, the shown output of each compared command with what it prints now
    (measured ones run, so that later commands find their files, and keep their text)."""
    changed, i = 0, 0
    while i < len(lines):
        if not lines[i].startswith("$ roofsim "):
            i += 1
            continue
        start = i
        while lines[i].endswith("\\"):
            i += 1
        body = []
        j = i + 1
        while j < len(lines) and not lines[j].startswith(("$ ", "```")):
            body.append(lines[j])
            j += 1
        ((command, _),) = _commands(lines[start : i + 1])
        if command in wanted:
            _, out = run(command)
            blank = len(body) - len("\n".join(body).rstrip("\n").split("\n")) if body else 0
            new = [
                old if old.endswith("...") and line.startswith(old[:-3]) else line
                for old, line in zip(body + [""] * len(out), out, strict=False)
            ] + [""] * blank
            if wanted[command] and new != body:
                lines[i + 1 : j] = new
                changed += 1
                j = i + 1 + len(new)
        i = j
    return changed


def _figures(text: str) -> tuple[str, int]:
    """``text`` with every prose figure (``<!--fig ...-->``) rewritten from its rows."""
    changed = 0
    for shown, now, (a, b) in reversed(figures_now(text)):
        if shown != now:
            text, changed = text[:a] + now + text[b:], changed + 1
    return text, changed


def _validation_table(lines: list[str]) -> int:
    """Rewrite the block after VALIDATION_MARKER with what ``validate --summary`` prints."""
    from test_docs import VALIDATION_MARKER

    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith(VALIDATION_MARKER))
    open_ = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    close = next(i for i in range(open_ + 1, len(lines)) if lines[i].startswith("```"))
    _, out = run("roofsim validate --summary --no-fail")
    new = out[: len(out) - (out[-1:] == [""])]
    changed = lines[open_ + 1 : close] != new
    lines[open_ + 1 : close] = new
    # the row counts of the prose above it (tests/test_docs.py checks the same figures)
    from sim.studies.validate import load_rows

    rows = load_rows()
    fit = sum(r["use"] == "fit" for r in rows)
    counts = (
        (r"\d+ numbers measured", f"{len(rows)} numbers measured"),
        (r"commit: \d+ rows", f"commit: {fit} rows"),
        (r'`use = "test"`: \d+ rows', f'`use = "test"`: {len(rows) - fit} rows'),
        (
            r"\d+ rows have at least one",
            f"{sum(bool(r['assumed']) for r in rows)} rows have at least one",
        ),
    )
    # from the heading of the section the table is in (the prose that counts its rows)
    heading = max((i for i in range(start) if lines[i].startswith("#")), default=0)
    for i in range(heading, start):
        for pattern, text in counts:
            updated = re.sub(pattern, text, lines[i])
            changed |= updated != lines[i]
            lines[i] = updated
    return int(changed)


if __name__ == "__main__":
    sys.exit(main())
