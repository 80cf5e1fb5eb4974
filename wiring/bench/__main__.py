"""``python -m wiring.bench``: see :mod:`wiring.bench.training` (``--inference``: :mod:`wiring.bench.inference`);
``--help`` is answered by the parser alone (:func:`wiring.bench.cli.help_main`), before PyTorch loads."""
import sys

from wiring.cli import asks_for_help

if not asks_for_help(sys.argv[1:]):
    from wiring.bench.training import main
else:
    from wiring.bench.cli import help_main as main   # the parser alone: no PyTorch, no engine

sys.exit(main())
