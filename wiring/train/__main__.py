"""``python -m wiring.train`` (and ``torchrun ... -m wiring.train``): see :mod:`wiring.train.pipeline`."""
import sys

from wiring.train.pipeline import main

sys.exit(main())
