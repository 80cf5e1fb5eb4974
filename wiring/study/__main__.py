"""``python -m wiring.study``: see :mod:`wiring.study.command`."""
import sys

from wiring.study.command import main

sys.exit(main())
