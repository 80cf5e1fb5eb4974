"""``python -m wiring.bench_inference``: the same command as ``python -m wiring.bench --inference``
(:mod:`wiring.bench.inference`), kept under the name the README has always printed."""
import sys

from wiring.bench.inference import PROG, main  # noqa: F401  (PROG: the command name it prints)

if __name__ == "__main__":
    sys.exit(main())
