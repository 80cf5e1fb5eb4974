"""``python -m wiring.train`` (and ``torchrun ... -m wiring.train``): see :mod:`wiring.train.pipeline`;
with ``--submit slurm|local`` the run is submitted as a job instead (:mod:`wiring.train.submit`);
``--help`` is answered by the parser alone (:func:`wiring.train.config.help_main`), before PyTorch loads."""
import sys

from wiring.cli import asks_for_help

submit = any(arg == "--submit" or arg.startswith("--submit=") for arg in sys.argv[1:])
if not submit and not asks_for_help(sys.argv[1:]):
    from wiring.train.pipeline import main
elif submit:
    from wiring.train.submit import main  # the job's submission, not the run itself
else:
    from wiring.train.config import help_main as main   # the parser alone: no PyTorch, no engine

sys.exit(main())
