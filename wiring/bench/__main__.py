"""``python -m wiring.bench``: see :mod:`wiring.bench.training` (``--inference``: :mod:`wiring.bench.inference`)."""
import sys

from wiring.bench.training import main

sys.exit(main())
