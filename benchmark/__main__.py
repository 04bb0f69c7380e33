"""``python -m benchmark``: the same command line as ``benchmark``."""

import sys

from benchmark.cli import main

sys.exit(main())
