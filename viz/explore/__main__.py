"""``python -m viz.explore``: see :mod:`viz.explore.command`."""
import sys

from viz.explore.command import main

sys.exit(main())
