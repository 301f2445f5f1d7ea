"""Every example in docs/plots.md, docs/sweeps.md and docs/report.md runs as written, and what they show is what
the commands print (issue 18: docs that cannot drift).

In a fenced block: a line ``$ roofsim ...`` runs and its output must be the lines under it (a
shown line ending in ``...`` stands for any line that starts with what precedes the dots); a line
``roofsim ...`` runs and must succeed; ``python benchmarks/...`` is a measured benchmark and is
not re-run here. A ``toml`` block must be a valid sweep spec (and the file it names, where its
first line is that file's path, must hold the same tables); a ``csv`` block must be the rows the
sweep named before it writes for those points; a ``python`` block runs. Commands run from a
scratch folder that sees the repository's benchmarks/ and docs/img/.
"""

from __future__ import annotations

import csv
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from sim.cli import main
from sim.studies.sweep import evaluate_lines, load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/plots.md", "docs/sweeps.md", "docs/report.md")
#: the README prose line that the validation table follows (docs/regen_readme.py rewrites it)
VALIDATION_MARKER = "Today (`roofsim validate --summary --no-fail`):"


def _blocks(text: str) -> list[tuple[str, list[str], str]]:
    """(info string, lines, the prose before the block) of each fenced block."""
    out, prose = [], []
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("```"):
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            out.append((line[3:].strip(), body, "\n".join(prose)))
            prose = []
        else:
            prose.append(line)
    return out


def _commands(body: list[str]) -> list[tuple[str, list[str] | None]]:
    """(command, expected output or None) of each command line, continuations joined."""
    out: list[tuple[str, list[str] | None]] = []
    i = 0
    while i < len(body):
        line = body[i]
        shown = line.startswith("$ ")
        if not (shown or line.startswith("roofsim ")):
            i += 1
            continue
        command = line.removeprefix("$ ")
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + body[i].strip()
        i += 1
        expected = None
        if shown:
            expected = []
            while i < len(body) and not body[i].startswith(("$ ", "roofsim ")):
                expected.append(body[i])
                i += 1
            while expected and not expected[-1].strip():  # a blank line before the next command
                expected.pop()
        out.append((command, expected))
    return out


def _matches(expected: list[str], got: list[str]) -> bool:
    if len(expected) != len(got):
        return False
    for want, have in zip(expected, got, strict=True):
        if want.endswith("...") and have.startswith(want[:-3]):
            continue
        if want.rstrip() != have.rstrip():
            return False
    return True


#: README commands not re-run here: a templated command, a 60 s search (plan)
README_SKIP = ("# B =", "roofsim plan ")
#: README commands run (later ones read their files) but whose output is a timing
README_MEASURED = ("roofsim sweep ",)


def run(command: str) -> tuple[int, list[str]]:
    """Run one documented ``roofsim ...`` command in-process: (exit code, stdout + stderr lines)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(shlex.split(command.split("  #")[0])[1:])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, (out.getvalue() + err.getvalue()).splitlines()


def readme_examples(text: str) -> list[tuple[str, list[str], bool]]:
    """The README's ``$ roofsim`` commands that tests re-run: (command, the output shown under
    it, whether that output is compared; a timing is not)."""
    return [
        (command, expected, not any(s in command for s in README_MEASURED))
        for _, body, _ in _blocks(text)
        for command, expected in _commands(body)
        if expected is not None and not any(s in command for s in README_SKIP)
    ]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    (tmp_path / "benchmarks").symlink_to(ROOT / "benchmarks")
    (tmp_path / "docs" / "img").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("doc", DOCS)
def test_every_example_in_the_doc_runs_as_written(doc, scratch, capsys):
    ran = 0
    for info, body, prose in _blocks((ROOT / doc).read_text()):
        text = "\n".join(body)
        if info == "toml":
            raw = tomllib.loads(text)
            spec_from_dict(raw, f"{doc} toml block")  # raises on an invalid spec
            named = (ROOT / body[0].removeprefix("# ")) if body[0].startswith("# ") else None
            if named is not None and named.is_file():
                assert raw == tomllib.loads(named.read_text()), f"{doc}: {named} differs"
            ran += 1
        elif info == "csv":
            spec_path = re.findall(r"benchmarks/sweeps/[\w.-]+\.toml", prose)[-1]
            spec = load_spec(ROOT / spec_path)
            assert body[0] == ",".join(spec.header), f"{doc}: the CSV header is not the spec's"
            at = spec.header.index("point")
            for row in body[1:]:
                point = int(next(csv.reader([row]))[at])
                assert row == evaluate_lines(spec, [point])[0], f"{doc}: point {point} differs"
            ran += 1
        elif info == "python":
            exec(compile(text, f"{doc} python block", "exec"), {})
            ran += 1
        else:
            for command, expected in _commands(body):
                if command.startswith("python "):
                    continue  # a benchmark: measured, not re-run in the tests
                capsys.readouterr()
                code = main(shlex.split(command)[1:])
                out = capsys.readouterr().out.splitlines()
                assert code == 0, f"{doc}: {command!r} exited {code}"
                if expected is not None:
                    assert _matches(expected, out), f"{doc}: {command!r} printed:\n" + "\n".join(
                        out
                    )
                ran += 1
    assert ran >= 5, f"{doc}: found only {ran} examples"


@pytest.fixture(scope="module")
def rows_once():
    """Each validation row run once for the tests below that both need it (the table, the
    prose figures): ``run_rows`` memoised by row id while they run."""
    from sim.studies import validate

    run, memo = validate.run_rows, {}

    def once(rows: list[dict], workers: int | None = None, bar=None):
        todo = list({r["id"]: r for r in rows if r["id"] not in memo}.values())
        memo.update(zip([r["id"] for r in todo], run(todo, workers), strict=True))
        if bar is not None:
            bar.update(len(rows))
        return [memo[r["id"]] for r in rows]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(validate, "run_rows", once)
        yield


def test_the_readme_validation_table_is_what_validate_prints(capsys, rows_once):
    """The README's headline numbers (test-row medians and bias per kind) are re-run here."""
    text = (ROOT / "README.md").read_text()
    marker = VALIDATION_MARKER
    block = next(b for _, b, prose in _blocks(text) if prose.rstrip().endswith(marker))
    assert main(["validate", "--summary", "--no-fail"]) == 0
    assert capsys.readouterr().out.splitlines() == block
    from sim.studies.validate import load_rows

    rows = load_rows()
    fit = sum(r["use"] == "fit" for r in rows)
    for figure in (f"{len(rows)} numbers measured", f"commit: {fit} rows",
                   f'`use = "test"`: {len(rows) - fit} rows',
                   f"{sum(bool(r['assumed']) for r in rows)} rows have at least one"):  # fmt: skip
        assert figure in " ".join(text.split()), figure


#: a figure in prose, computed from validation rows: ``<!--fig SPEC-->shown<!--/fig-->`` where
#: SPEC is ``row=ID`` or ``rows=ID,ID,...`` (a range, low..high), ``field=`` predicted, measured,
#: error, faster (the error signed by speed) or abs (|error|), and ``fmt=`` a format spec (a
#: percentage is printed with a space before its sign: "-12 %")
FIGURE = re.compile(r"<!--fig (?P<spec>[^>]*?)-->(?P<shown>[^<]*)<!--/fig-->")
FIELDS = ("predicted", "measured", "error", "faster", "abs")


def figure_specs(text: str) -> list[tuple[dict[str, str], str, tuple[int, int]]]:
    """(spec, shown text, span of the shown text) of each figure in ``text``; ValueError for
    an opener without its closer or a spec that is not ``row=``/``rows=``, ``field=``, ``fmt=``."""
    found = list(FIGURE.finditer(text))
    if len(found) != len(re.findall(r"<!--\s*fig\b", text)):
        raise ValueError("a <!--fig ...--> figure lacks its <!--/fig--> (or is misspelt)")
    out = []
    for m in found:
        items = m["spec"].split()
        if not all("=" in item for item in items):
            raise ValueError(f"figure spec {m['spec']!r}: every item is key=value")
        spec = dict(item.split("=", 1) for item in items)
        if (set(spec) - {"row", "rows", "field", "fmt"} or not ({"row", "rows"} & set(spec))
                or spec.get("field", "predicted") not in FIELDS):  # fmt: skip
            raise ValueError(
                f"figure spec {m['spec']!r}: row= or rows=, field= one of {', '.join(FIELDS)}, fmt="
            )
        out.append((spec, m["shown"], m.span("shown")))
    return out


def figure_values(specs: list[dict[str, str]]) -> dict[str, object]:
    """The validation result of every row the specs name (ratio rows with their members)."""
    from sim.studies import validate
    from sim.studies.validate import load_rows, ratio_row

    by_id = {r["id"]: r for r in load_rows()}
    named = dict.fromkeys(i for spec in specs for i in (spec.get("row") or spec["rows"]).split(","))
    ratios = [by_id[i] for i in named if by_id[i]["kind"] == "ratio"]
    plain = [by_id[i] for i in dict.fromkeys([*named, *(m for r in ratios for m in r["of"])])
             if by_id[i]["kind"] != "ratio"]  # fmt: skip
    # validate.run_rows looked up now: the tests' memoised one while they run
    ran = validate.run_rows(plain)
    done: dict[str, object] = dict(zip([r["id"] for r in plain], ran, strict=True))
    for row in ratios:
        done[row["id"]] = ratio_row(row, by_id, done)
    return done


def figure_text(spec: dict[str, str], results: dict[str, object]) -> str:
    """What a figure shows: the field of its row, or the range of the field over its rows."""
    field, fmt = spec.get("field", "predicted"), spec.get("fmt", ".3g")

    def value(i: str) -> float:
        r = results[i]
        v = getattr(r, "error" if field == "abs" else field)
        if v is None:
            raise ValueError(f"figure: row {i!r} has no {field} (skipped: {r.skipped})")  # type: ignore[attr-defined]
        return abs(v) if field == "abs" else v

    def text(v: float) -> str:
        return format(v, fmt).replace("%", "")

    unit = " %" if fmt.endswith("%") else ""
    if "row" in spec:
        return text(value(spec["row"])) + unit
    values = sorted(value(i) for i in spec["rows"].split(","))
    lo, hi = text(values[0]), text(values[-1])
    return (lo if lo == hi else f"{lo}..{hi}") + unit


def figures_now(text: str) -> list[tuple[str, str, tuple[int, int]]]:
    """(shown, computed, span) of each figure of ``text``."""
    found = figure_specs(text)
    results = figure_values([spec for spec, _, _ in found])
    return [(shown, figure_text(spec, results), span) for spec, shown, span in found]


def test_every_prose_figure_is_what_its_rows_give(rows_once):
    """A figure in the README's or the docs' prose is computed from validation rows
    (regenerate with ``python docs/regen_readme.py``, never by hand)."""
    checked = 0
    for doc in ("README.md", *DOCS):
        for shown, now, _ in figures_now((ROOT / doc).read_text()):
            assert shown == now, f"{doc}: a figure shows {shown!r}, its rows now give {now!r}"
            checked += 1
    assert checked >= 5


def test_a_figure_without_its_closer_or_with_a_bad_spec_is_refused():
    for text, why in (("<!--fig row=a field=error-->1 % and <!--fig row=b-->2<!--/fig-->", "lacks"),
                      ("<!--fig row=a field=size-->1<!--/fig-->", "field= one of"),
                      ("<!--fig row=a error-->1<!--/fig-->", "key=value")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            figure_specs(text)


def test_every_readme_example_prints_what_the_readme_shows(scratch):
    """Regenerate with ``python docs/regen_readme.py`` (never by hand)."""
    checked = 0
    for command, expected, compare in readme_examples((ROOT / "README.md").read_text()):
        code, out = run(command)
        if compare:
            assert _matches(expected, out), f"README: {command!r} now prints:\n" + "\n".join(out)
            checked += 1
        else:
            assert code == 0, f"README: {command!r} exited {code}"
    assert checked >= 8


def test_every_data_file_the_packages_read_is_package_data():
    # a plain (non-editable) install carries only package-data globs: a preset folder missing
    # from them breaks that command after `pip install .` (the runtimes folder once did)
    import fnmatch

    def matches(rel: str, pattern: str) -> bool:  # setuptools' glob: * stays inside a folder
        return re.fullmatch(fnmatch.translate(pattern).replace(".*", "[^/]*"), rel) is not None

    root = Path(__file__).resolve().parent.parent
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    for package, patterns in globs.items():
        assert patterns, package
    missing = []
    for package in ("hardware", "workloads", "sim"):
        for path in (root / package).rglob("*"):
            if path.suffix not in (".toml", ".json") or "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root / package).as_posix()
            if not any(matches(rel, p) for p in globs.get(package, [])):
                missing.append(f"{package}/{rel}")
    assert not missing, f"not package data (add to pyproject.toml): {missing}"


def test_the_readme_dit_scaling_table_is_what_the_benchmark_prints():
    """The HunyuanVideo sequence-parallel table in README.md is benchmarks/dit_scaling.py's
    --markdown output (rerun the command in the README to refresh it and the plot)."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dit_scaling.py"), "--model", "hunyuanvideo",
         "--chip", "h100-sxm", "--markdown"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| chips | Ulysses | speed-up | ring | speed-up |")
    shown = readme[start : readme.index("\n\n", start)]
    assert shown == out, f"README's DiT scaling table differs from the benchmark's:\n{out}"
