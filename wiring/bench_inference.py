"""``python -m wiring.bench_inference``: the same command as ``python -m wiring.bench --inference``
(:mod:`wiring.bench.inference`), kept under the name the README has always printed; ``--help`` is
answered by the parser alone (:func:`wiring.bench.cli.help_main`), before PyTorch loads."""
import sys

from wiring.cli import asks_for_help

if __name__ == "__main__" and asks_for_help(sys.argv[1:]):
    from wiring.bench.cli import help_main
    sys.exit(help_main(["--inference", *sys.argv[1:]]))

from wiring.bench.inference import PROG, main  # noqa: E402,F401  (PROG: the command name it prints)

if __name__ == "__main__":
    sys.exit(main())
