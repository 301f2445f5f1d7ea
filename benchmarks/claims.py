"""Widely repeated compute claims against what roofsim derives (the same as ``roofsim claims``).

python benchmarks/claims.py [--claim pim] [--json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["claims", *sys.argv[1:]]))
