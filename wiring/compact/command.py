"""``python -m wiring.compact RUN_DIR``: compact a trained run's model, check and time it, save it.

Contract: reads the run's checkpoint (``--best`` / ``--checkpoint FILE``), rebuilds its
model, compacts it, checks the two agree on a random batch, times both alternately (median,
:func:`time_alternating`) and writes ``RUN_DIR/compact.pt`` (or ``-o``); user mistakes are
one line ``python -m wiring.compact: error: ...`` and exit status 2.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from wiring.cli import ArgumentParser, error_line, run_cli
from wiring.errors import UserError
from wiring.io import BEST_FILE, CHECKPOINT_FILE
from wiring.lazy import lazy_module
from wiring.train.allocator import tune_malloc
from wiring.train.checkpoint import CheckpointError, load_checkpoint

if TYPE_CHECKING:
    from torch import Tensor, nn

# the model, the compactor and torch load when the command runs, not for --help
torch = lazy_module("torch")


def load_run_model(run_dir: Path, checkpoint: Path | None = None, best: bool = False) -> nn.Module:
    """The trained model of a run directory (as ``wiring.export`` rebuilds it), in eval mode; a
    model that does not record its input side (the tiny classifier) gets the run's as ``image_size``."""


    from wiring.train.build import model_from_checkpoint
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory {run_dir}")
    ckpt = load_checkpoint(checkpoint or run_dir / (BEST_FILE if best else CHECKPOINT_FILE))
    model = model_from_checkpoint(ckpt).eval()
    if getattr(model, "image_size", None) is None:
        model.image_size = int(ckpt["data_info"]["image_size"])
    return model


def time_alternating(models: dict[str, Callable[[Tensor], Tensor]], x: Tensor,
                     repeats: int) -> dict[str, float]:
    """Median seconds per call of each of ``models`` on ``x`` (no autograd): one warm-up call
    each, then ``repeats`` rounds calling all of them, in reverse order on every other round."""
    with torch.no_grad():
        for fn in models.values():
            fn(x)
        times: dict[str, list[float]] = {name: [] for name in models}
        order = list(models.items())
        for i in range(repeats):
            for name, fn in (order if i % 2 == 0 else order[::-1]):
                start = time.perf_counter()
                fn(x)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


PROG = "python -m wiring.compact"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, 1 when the compact model does not match, or 2 and one line
    ``python -m wiring.compact: error: ...`` for a user mistake."""

    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:

    parser = ArgumentParser(prog=PROG,
                            description="Compact a trained MobileNetV1-DNW or static tiny classifier run into "
                                        "a standalone inference model (dead nodes removed, sparse real edges).")
    parser.add_argument("run_dir", type=Path, help="run directory written by wiring.train")
    parser.add_argument("-o", "--out", type=Path, help="output file (default RUN_DIR/compact.pt)")
    parser.add_argument("--best", action="store_true", help="use best.pt instead of checkpoint.pt")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint file to read instead")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the check and the timing")
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards of each model")
    args = parser.parse_args(argv)
    from models.cost import inference_parameters
    from wiring.compact.extract import compact_model, save_compact
    from wiring.compact.runtime import CompactTiny, load_compact
    tune_malloc()                                   # an entry point: freed blocks stay warm (see wiring.train.allocator)
    if args.batch < 1 or args.repeats < 1:
        raise UserError("--batch and --repeats must be at least 1")
    out = args.out or args.run_dir / "compact.pt"
    if not out.parent.is_dir():
        raise UserError(f"-o {out}: folder {out.parent} does not exist")
    if out.suffix.lower() in (".graphml", ".txt"):
        raise UserError(f"-o {out}: the compact model is a torch .pt file, not {out.suffix}; name it "
                        f"{out.with_suffix('.pt').name}")
    try:
        model = load_run_model(args.run_dir, args.checkpoint, args.best)
        compact = compact_model(model)
    except ValueError as err:       # CheckpointError, ConfigError, GraphError, and a model it cannot compact
        if isinstance(err, UserError):
            raise
        raise UserError(str(err)) from None
    save_compact(compact, out)
    reloaded = load_compact(out)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, compact.meta["in_channels"], compact.meta["image_size"],
                    compact.meta["image_size"], generator=gen)
    with torch.no_grad():
        expected = model(x)
        diff = float((expected - reloaded(x)).abs().max())
        relative = diff / max(1.0, float(expected.abs().max()))
    med = time_alternating({"model": model, "compact": reloaded}, x, args.repeats)
    t_model, t_compact = med["model"], med["compact"]
    total = sum(p.numel() for p in model.parameters())
    print(f"compact model: {out}")
    print(f"  parameters  {total:,} in the training model (all candidates) -> {inference_parameters(model):,} "
          f"in the inference network (as wiring.train and wiring.profile count them)")
    print(f"  stored      {compact.num_parameters():,} values in the compact file (BatchNorm folded"
          + (", constant nodes folded into their targets' inputs)" if isinstance(compact, CompactTiny) else ")"))
    if isinstance(compact, CompactTiny):
        n = compact.counts
        print(f"  graph       {n['nodes']} nodes -> {n['kept']} kept ({n['dead']} dead removed, {n['constant']} "
              f"constant folded); {n['edges']} real edges -> {n['kept_edges']} between kept nodes")
    print(f"  check       max |logit difference| {diff:.2e} ({relative:.2e} of the largest logit) on a "
          f"random batch of {args.batch}")
    print(f"  speed       batch {args.batch}: training model in eval mode {t_model * 1e3:.2f} ms, compact "
          f"{t_compact * 1e3:.2f} ms (median of {args.repeats}, alternating): "
          f"{t_model / max(t_compact, 1e-12):.2f}x")
    print(f"  load with   wiring.compact.load_compact({str(out)!r}) (imports only torch)")
    if relative > 1e-4:
        print(error_line(PROG, "the compact model does not match the training model"), file=sys.stderr)
        return 1
    return 0
