"""Animate a run's wiring history: one frame per ``history.pt`` snapshot.

Contract:

* Every frame uses the same fixed layout (:mod:`viz.layout`) and the same
  figure: the artists are created once and updated in place
  (``LineCollection.set_segments`` / ``set_color``), so rendering memory does not
  grow with the number of frames.
* Edges that appeared since the previous shown frame are drawn bright green and
  thicker, edges that vanished dashed orange and faded; the caption gives the
  step, the epoch and test accuracy of the last epoch whose ``step`` is at most
  the frame's step (from ``metrics.jsonl``), k and density, dead nodes, and the
  churn (edges added / removed).
* :func:`select_frames` subsamples evenly, keeping the first and last snapshot.
* GIF through Pillow (:class:`matplotlib.animation.PillowWriter`, each frame
  reduced to 256 colours as it is grabbed; Pillow merges consecutive identical
  frames into one longer frame, so a GIF can hold fewer frames than were drawn,
  never a different picture). MP4 through an ffmpeg binary: the one of the
  ``imageio-ffmpeg`` package, else ``ffmpeg`` on the PATH. Pillow keeps a GIF's
  frames in memory until it writes the file (about width x height bytes each);
  ffmpeg streams.

CLI::

    python -m viz.animate RUN_DIR [-o evolution.gif|.mp4] [--fps N] [--max-frames N]
                          [--size W H] [--dpi N] [--quiet]

User mistakes (no history, unknown extension, no ffmpeg for .mp4...) exit with
status 2 and one line on stderr; the output appears only once complete.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from wiring.io import RunData, WiringHistory

from .render import (ArgumentParser, UsageError, WiringDrawing, _edge_params, add_figure_options, add_wiring_option,
                     atomic_path, check_pixels, dead_of, die, load_run_dir, new_figure, output_path, positive_float,
                     positive_int, weight_range, wiring_info)

__all__ = ["ANIMATION_FORMATS", "ADDED", "REMOVED", "select_frames", "EvolutionFigure", "ffmpeg_binary",
           "animate_run", "main"]

ANIMATION_FORMATS = ("gif", "mp4")
ADDED = "#00c853"     # bright green: edges new since the previous frame
REMOVED = "#ff8f00"   # orange, dashed and faded: edges gone since the previous frame


def select_frames(count: int, max_frames: int | None = None) -> list[int]:
    """Indices of the snapshots to show: all of them, or ``max_frames`` spread
    evenly, the first and the last always included.

    >>> select_frames(10, 4), select_frames(3, 10), select_frames(5, 1), select_frames(0)
    ([0, 3, 6, 9], [0, 1, 2], [4], [])
    """
    if count <= 0:
        return []
    if max_frames is None or max_frames >= count:
        return list(range(count))
    if max_frames <= 1:
        return [count - 1]
    picks = np.linspace(0, count - 1, max_frames).round().astype(int)
    return sorted(set(picks.tolist()))


class EvolutionFigure:
    """One figure that shows any snapshot of ``history`` (see the module docstring).

    ``frames``: the snapshot indices that will be shown, in order; the previous
    entry of that list is what "added" and "removed" refer to. The edge opacity
    scale is fixed over those frames.
    """

    def __init__(self, history: WiringHistory, metrics: Sequence[Mapping] = (), *,
                 frames: Sequence[int] | None = None, title: str = "", size: Sequence[float] = (8.0, 4.8),
                 dpi: int = 80) -> None:
        if not len(history):
            raise ValueError("the history has no snapshots")
        self.history = history
        self.metrics = list(metrics)
        self.frames = list(range(len(history))) if frames is None else list(frames)
        self.title = title
        self.fig: Figure = new_figure(size, dpi)
        ax = self.fig.add_axes((0.01, 0.12, 0.98, 0.72))
        self.ax = ax
        counts = [int(history.real_index(i).numel()) for i in self.frames]
        scale = weight_range(history.frame(i).weight.numpy() for i in self.frames)
        self.drawing = WiringDrawing(ax, history.level, history.role, history.attrs,
                                     n_edges=max(counts, default=1), scale=scale)
        w_top = _edge_params(self.drawing.n_edges)[3]
        self.removed = LineCollection([], zorder=1.5, colors=REMOVED, linewidths=max(0.8, 0.9 * w_top),
                                      linestyles=(0, (3, 2)), alpha=0.55)
        self.added = LineCollection([], zorder=2, colors=ADDED, linewidths=max(0.9, 1.3 * w_top), alpha=0.85)
        ax.add_collection(self.removed)
        ax.add_collection(self.added)
        handles = self.drawing.legend_handles(counts=False)
        handles[2:2] = [Line2D([], [], color=ADDED, lw=2, label="added"),
                        Line2D([], [], color=REMOVED, lw=1.5, ls=(0, (3, 2)), label="removed")]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=5,
                  frameon=False, fontsize=7, handlelength=1.6, columnspacing=1.0)
        self.caption = ax.set_title("", fontsize=8.5)
        self.shown: int | None = None

    def show(self, position: int) -> dict:
        """Draw ``frames[position]``; returns the caption values (step, test_acc,
        epoch, k, density, dead, added, removed; added/removed None for the first)."""
        h = self.history
        index = self.frames[position]
        wiring = h.frame(index)
        self.drawing.set_edges(wiring.edge_index, wiring.weight)
        dead = dead_of(wiring)
        self.drawing.set_dead(dead)
        now = h.real_index(index).numpy()
        if position > 0:
            before = h.real_index(self.frames[position - 1]).numpy()
            added = np.setdiff1d(now, before, assume_unique=True)
            removed = np.setdiff1d(before, now, assume_unique=True)
        else:
            added = removed = np.zeros(0, dtype=np.int64)
        cand = h.candidates.numpy()
        self.added.set_segments(self.drawing.segments(cand[:, added]))
        self.removed.set_segments(self.drawing.segments(cand[:, removed]))
        info = wiring_info(wiring, self.metrics)
        info.update(dead=len(dead), added=int(added.size) if position else None,
                    removed=int(removed.size) if position else None)
        self.caption.set_text(caption(info, self.title))
        self.shown = position
        return info

    def rgba(self) -> np.ndarray:
        """The current picture as an ``[H, W, 4]`` uint8 array (a copy)."""
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba()).copy()


def caption(info: Mapping, title: str = "") -> str:
    """Two lines: ``title · step (epoch) · test acc`` and ``k · density · dead ·
    churn``; always the edge count (k) and the density together."""
    first = [title] if title else []
    first.append(f"step {info['step']:,}" if info.get("step") is not None else "step n/a")
    if info.get("epoch") is not None:
        first[-1] += f" (epoch {info['epoch']})"
    acc = info.get("test_acc")
    first.append("test acc n/a" if acc is None else f"test acc {100 * acc:.1f}%")
    second = [f"k = {info['k']:,} edges",
              "density n/a" if info.get("density") is None else f"density {100 * info['density']:.3g}%"]
    if info.get("dead") is not None:
        second.append(f"dead {info['dead']:,}")
    if info.get("added") is None:
        second.append("churn: first frame")
    else:
        second.append(f"churn +{info['added']:,} added / −{info['removed']:,} removed")
    return "  ·  ".join(first) + "\n" + "  ·  ".join(second)


def ffmpeg_binary() -> str | None:
    """The ffmpeg of ``imageio-ffmpeg`` if installed, else ``ffmpeg`` on the PATH."""
    try:
        import imageio_ffmpeg
        exe = imageio_ffmpeg.get_ffmpeg_exe()
        if exe and os.path.isfile(exe):
            return exe
    except Exception:  # not installed, or its binary missing
        pass
    return shutil.which("ffmpeg")


def _writer(fmt: str, fps: float):
    from matplotlib import animation
    from PIL import Image

    if fmt == "gif":
        class PaletteGifWriter(animation.PillowWriter):
            """PillowWriter that keeps each frame as 256 colours (fast octree), not RGB."""

            def grab_frame(self, **savefig_kwargs):
                super().grab_frame(**savefig_kwargs)
                frame = self._frames[-1]
                if frame.mode == "RGB":
                    self._frames[-1] = frame.quantize(256, method=Image.Quantize.FASTOCTREE,
                                                      dither=Image.Dither.NONE)

        return PaletteGifWriter(fps=fps)
    exe = ffmpeg_binary()
    if exe is None:
        raise UsageError("no ffmpeg binary for .mp4: pip install imageio-ffmpeg (or install ffmpeg), "
                         "or write a .gif")
    import matplotlib
    matplotlib.rcParams["animation.ffmpeg_path"] = exe
    return animation.FFMpegWriter(fps=fps, codec="libx264", extra_args=["-pix_fmt", "yuv420p"])


def animate_run(run: RunData, path: str | os.PathLike, *, fps: float = 4.0, max_frames: int | None = 200,
                size: Sequence[float] = (8.0, 4.8), dpi: int = 80, title: str | None = None,
                progress: Callable[[int, int], None] | None = None) -> int:
    """Write the animation of ``run.history`` to ``path`` (.gif or .mp4), atomically;
    returns the number of frames drawn. ``progress(i, n)`` is called after each.
    Raises :class:`~viz.render.UsageError` when the run has no snapshots or .mp4 has
    no ffmpeg, ``ValueError`` for another extension."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ANIMATION_FORMATS:
        raise ValueError(f"unknown animation extension {path.suffix!r}: use .gif or .mp4")
    history = run.history
    if history is None or not len(history):
        raise UsageError(f"run directory {run.path} has no history.pt snapshots to animate")
    frames = select_frames(len(history), max_frames)
    writer = _writer(fmt, fps)
    figure = EvolutionFigure(history, run.metrics, frames=frames,
                             title=run.path.name if title is None else title, size=size, dpi=dpi)
    with atomic_path(path) as tmp:
        with writer.saving(figure.fig, str(tmp), dpi):
            for position in range(len(frames)):
                figure.show(position)
                writer.grab_frame()
                if progress is not None:
                    progress(position + 1, len(frames))
    return len(frames)


def _progress_printer(quiet: bool) -> Callable[[int, int], None] | None:
    if quiet:
        return None
    tty = sys.stderr.isatty()

    def report(i: int, n: int) -> None:
        if tty:
            print(f"\rframe {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)
        elif i == n or i == 1 or i % max(1, n // 10) == 0:
            print(f"frame {i}/{n}", file=sys.stderr, flush=True)

    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m viz.animate",
                            description="Animate the wiring snapshots (history.pt) of a run directory.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding history.pt")
    parser.add_argument("-o", "--output", default="evolution.gif",
                        help="output file: .gif or .mp4 (default evolution.gif)")
    parser.add_argument("--fps", type=positive_float, default=4.0, help="frames per second (default 4)")
    parser.add_argument("--max-frames", type=positive_int, default=200,
                        help="at most this many frames, spread evenly, first and last kept (default 200)")
    add_figure_options(parser, (8.0, 4.8), 80)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_wiring_option(parser)
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        out, fmt = output_path(args.output, ANIMATION_FORMATS)
        check_pixels(args.size, args.dpi, 8000)
        if fmt == "mp4" and ffmpeg_binary() is None:
            raise UsageError("no ffmpeg binary for .mp4: pip install imageio-ffmpeg (or install ffmpeg), "
                             "or write a .gif")
        run = load_run_dir(args.run_dir, args.wiring)
        if run.history is None:
            raise UsageError(f"run directory {args.run_dir} has no {run.wiring_file('history', '.pt')}")
        import matplotlib
        matplotlib.use("Agg")
        n = animate_run(run, out, fps=args.fps, max_frames=args.max_frames, size=args.size, dpi=args.dpi,
                        progress=_progress_printer(args.quiet))
    except UsageError as err:
        die(prog, str(err))
    except OSError as err:
        die(prog, f"cannot write {args.output}: {err.strerror or err}")
    if not args.quiet:
        print(f"wrote {out} ({n} frames)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
