"""``python -m wiring.train`` (and ``torchrun ... -m wiring.train``): see :mod:`wiring.train.pipeline`;
with ``--submit slurm|local`` the run is submitted as a job instead (:mod:`wiring.train.submit`)."""
import sys

from wiring.train.pipeline import main

if any(arg == "--submit" or arg.startswith("--submit=") for arg in sys.argv[1:]):
    from wiring.train.submit import main  # noqa: F811 - the job's submission, not the run itself

sys.exit(main())
