"""Validate roofsim against the published measurements in sim/studies/data/published.toml.

    python benchmarks/validate.py [--kind decode] [--fast] [--summary] [--report report.json]

The same as ``roofsim validate``: prints predicted, measured and the error per row (and whether
anything was fitted against it), the median error and bias per kind of the test rows, the
sourced test rows and the fit rows, and exits 1 when a kind's test-row median is above its bar.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
