"""``python -m sim.cli``: the roofsim command."""

import sys

from sim.cli.app import main

sys.exit(main())
