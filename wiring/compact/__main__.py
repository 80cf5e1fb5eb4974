"""``python -m wiring.compact RUN_DIR``: see :mod:`wiring.compact.command`."""
import sys

from wiring.compact.command import main

sys.exit(main())
