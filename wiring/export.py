"""``python -m wiring.export RUN_DIR``: export a checkpoint's wiring again.

Reads ``RUN_DIR/checkpoint.pt`` (or ``--checkpoint FILE``, or ``--best`` for
``best.pt``) with ``weights_only=True``, rebuilds the run's model from the saved
config, and writes each learned wiring as

* ``graphml``: real edges with ``signed_weight`` (``--all-candidates``: every candidate,
  with a boolean ``real``); node attributes ``level``, ``role``; graph attributes
  ``k``, ``density``, ``candidates``, ``preset``, ``mode``, ``seed``, ``step``;
* ``pyg``: a ``torch.save`` of a ``torch_geometric.data.Data`` (:func:`wiring.io.to_pyg`:
  ``edge_index``, ``edge_weight``, ``level``, ``role``, ``num_nodes``, ``attrs`` and
  ``real`` with ``--all-candidates``): ``torch.load(path, weights_only=False)`` returns it
  (for a file you trust); without unpickling code, allow PyG's storage classes first::

      from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
      from torch_geometric.data.storage import GlobalStorage
      with torch.serialization.safe_globals([DataEdgeAttr, DataTensorAttr, GlobalStorage]):
          data = torch.load(path, weights_only=True)

* ``edgelist``: ``source target weight`` lines under a ``#`` header.

All formats are readable without this library. ``--compact`` writes a standalone
inference model instead (:mod:`wiring.compact`). Exits 2 with one line on a user mistake.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from wiring.cli import ArgumentParser, run_cli
from wiring.files import atomic_write
from wiring.graph import Wiring
from wiring.io import BEST_FILE, CHECKPOINT_FILE, to_pyg, write_edgelist, write_graphml
from wiring.lazy import lazy_module
from wiring.train.checkpoint import CheckpointError, load_checkpoint

# the model, the trainer's modules and torch load when the command runs, not for --help
torch = lazy_module("torch")

FORMATS = {"graphml": ".graphml", "pyg": ".pt", "edgelist": ".txt"}


def load_wirings(checkpoint: dict, all_candidates: bool = False) -> dict[str, Wiring]:
    """The wirings of a training checkpoint, by module name."""
    from wiring.train.monitor import find_wirings
    from wiring.train.build import model_from_checkpoint
    model = model_from_checkpoint(checkpoint)
    step = int(checkpoint.get("step", 0))
    return {name: layer.wiring(all_candidates, step=step) for name, layer in find_wirings(model).items()}


def save_pyg(w: Wiring, path: Path) -> None:
    """Write ``w`` as a ``torch.save`` of its PyG ``Data`` (tensors detached, on the CPU), atomically."""
    data = to_pyg(w)
    for key, value in list(data.items()):
        if isinstance(value, torch.Tensor):
            data[key] = value.detach().cpu()
    atomic_write(path, lambda f: torch.save(data, f), binary=True)


def export(run_dir: Path, fmt: str, *, out: Path | None = None, checkpoint: Path | None = None,
           best: bool = False, all_candidates: bool = False) -> list[Path]:
    """Write the wirings of a run's checkpoint; returns the files written."""
    from wiring.train.recorder import wiring_file_stem
    if not run_dir.is_dir():
        raise CheckpointError(f"no run directory {run_dir}")
    source = checkpoint or run_dir / (BEST_FILE if best else CHECKPOINT_FILE)
    wirings = load_wirings(load_checkpoint(source), all_candidates)
    suffix = FORMATS[fmt]
    base = "export-candidates" if all_candidates else "export"
    written = []
    for name, w in wirings.items():
        stem = wiring_file_stem(name, base, len(wirings))
        if out is None or out.is_dir():
            path = (out or run_dir) / f"{stem}{suffix}"
        elif len(wirings) == 1:
            path = out
        else:
            path = out.with_name(f"{out.stem}-{stem}{out.suffix or suffix}")
        if fmt == "graphml":
            write_graphml(w, path)
        elif fmt == "edgelist":
            write_edgelist(w, path)
        else:
            save_pyg(w, path)
        written.append(path)
    return written


#: the file extensions this command's outputs are known by
KNOWN_SUFFIXES = {".graphml": "graphml", ".pt": "pyg (or --compact)", ".txt": "edgelist"}


def check_suffix(out: Path | None, suffix: str, what: str) -> None:
    """Refuse an output named like another format's file (``--format pyg -o x.graphml`` would
    put a torch file under a GraphML name); a folder, or any other name, is left alone."""
    if out is None or out.is_dir():
        return
    given = out.suffix.lower()
    if given in KNOWN_SUFFIXES and given != suffix:
        raise CheckpointError(f"-o {out}: {what} writes a {suffix} file, not {given} "
                              f"({given} is the {KNOWN_SUFFIXES[given]} format's); name it "
                              f"{out.with_suffix(suffix).name}")


PROG = "python -m wiring.export"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m wiring.export: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run directory written by wiring.train")
    parser.add_argument("--format", choices=tuple(FORMATS), default="graphml",
                        help="graphml (default), pyg (a .pt of a torch_geometric Data) or edgelist (a .txt)")
    parser.add_argument("--all-candidates", action="store_true", help="every candidate, with a real flag")
    parser.add_argument("--best", action="store_true", help="use best.pt instead of checkpoint.pt")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint file to read instead")
    parser.add_argument("-o", "--out", type=Path, help="output file (default: in RUN_DIR)")
    parser.add_argument("--compact", action="store_true",
                        help="a standalone inference model instead (dead nodes removed, real edges as sparse "
                             "operators); see python -m wiring.compact --help")
    args = parser.parse_args(argv)
    if args.compact:
        from wiring.compact.command import main as compact_main
        forward = [str(args.run_dir)] + (["--best"] if args.best else []) + \
            (["--checkpoint", str(args.checkpoint)] if args.checkpoint else []) + \
            (["-o", str(args.out)] if args.out else [])
        return compact_main(forward)
    if args.out is not None and not args.out.parent.is_dir():
        raise CheckpointError(f"-o {args.out}: folder {args.out.parent} does not exist")
    check_suffix(args.out, FORMATS[args.format], f"--format {args.format}")
    for path in export(args.run_dir, args.format, out=args.out, checkpoint=args.checkpoint,
                       best=args.best, all_candidates=args.all_candidates):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
