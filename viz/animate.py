"""Animate a run's wiring history: one frame per ``history.pt`` snapshot.

Contract:

* Every frame uses the same fixed layout (:mod:`viz.layout`) and the same
  figure: the artists are created once and updated in place
  (``LineCollection.set_segments`` / ``set_color``), so rendering memory does not
  grow with the number of frames.
* The wiring is drawn as :mod:`viz.render` draws it (ranked by ``|w|`` from
  2,000 edges: the strongest stand out, the rest fade). Only the swaps since the
  previous shown frame are highlighted, as thin lines: added edges green, removed
  ones dashed orange. The caption (top) gives the step, the epoch that step lies
  in (:func:`viz.sources.epoch_of`: ``metrics.jsonl`` records each epoch's last
  step), the test accuracy of the last epoch finished at that step, k and
  density, dead nodes and the swaps (edges added / removed since the previous
  frame's step). A strip under the graph counts those swaps per level pair, on
  one scale for the whole animation. Default size 1280 x 720 pixels.
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
                          [--size W H] [--dpi N] [--style auto|ranked|weight] [--strong N] [--quiet]

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
from matplotlib.ticker import FuncFormatter

from viz.cli import (
    UsageError,
    add_figure_options,
    add_wiring_option,
    check_pixels,
    output_path,
    positive_float,
    positive_int,
)
from viz.layout import is_dynamic
from viz.render import (
    WiringDrawing,
    _edge_params,
    dead_of,
    new_figure,
    resolve_style,
    weight_range,
)
from viz.sources import load_run_dir, wiring_info
from viz.style import STYLES, plain
from wiring.cli import ArgumentParser, die, run_cli
from wiring.files import atomic_path
from wiring.io import RunData, WiringHistory
from wiring.picture import STRONG_EDGES, group_names, groups

__all__ = ["ANIMATION_FORMATS", "ADDED", "REMOVED", "select_frames", "EvolutionFigure", "ffmpeg_binary",
           "animate_run", "main"]

ANIMATION_FORMATS = ("gif", "mp4")
ADDED = "#00c853"     # bright green: edges new since the previous frame
REMOVED = "#ff8f00"   # orange, dashed and faded: edges gone since the previous frame
SWAPS_OPAQUE = 200    # ranked style: up to this many swaps a frame at full highlight opacity
DEFAULT_SIZE = (12.8, 7.2)  # inches: 1280 x 720 at the default dpi
DEFAULT_DPI = 100


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
    entry of that list is what "added" and "removed" refer to. ``style``: the edge
    style of :class:`~viz.render.WiringDrawing` (``"auto"``: ranked from
    :data:`~viz.render.RANKED_FROM` edges); with ``"weight"`` the opacity scale is
    fixed over those frames. Under the graph a strip counts the swaps of each
    level pair (source column, target column) since the previous frame, on one
    scale for the whole animation.
    """

    def __init__(self, history: WiringHistory, metrics: Sequence[Mapping] = (), *,
                 frames: Sequence[int] | None = None, title: str = "", size: Sequence[float] = DEFAULT_SIZE,
                 dpi: int = DEFAULT_DPI, style: str = "auto", strong: int = STRONG_EDGES) -> None:
        if not len(history):
            raise ValueError("the history has no snapshots")
        self.history = history
        self.metrics = list(metrics)
        self.frames = list(range(len(history))) if frames is None else list(frames)
        self.title = title
        self.fig: Figure = new_figure(size, dpi)
        height_in = float(size[1])
        font = float(np.clip(height_in * 1.6, 7.0, 13.0))  # 7.2 inches: 11.5 pt
        ax = self.fig.add_axes((0.01, 0.31, 0.98, 0.55))
        self.ax = ax
        counts = [int(history.real_index(i).numel()) for i in self.frames]
        scale = weight_range(history.frame(i).weight.numpy() for i in self.frames)
        chosen = resolve_style(style, max(counts, default=1))
        self.drawing = WiringDrawing(ax, history.level, history.role, history.attrs,
                                     n_edges=max(counts, default=1), scale=scale, style=chosen, strong=strong)
        w_top = _edge_params(self.drawing.n_edges)[3]
        thin = chosen == "ranked"
        self.thin = thin
        self.removed = LineCollection([], zorder=1.5, colors=REMOVED, linewidths=0.45 if thin else max(0.8, 0.9 * w_top),
                                      linestyles=(0, (3, 2)), alpha=0.7 if thin else 0.55)
        self.added = LineCollection([], zorder=2, colors=ADDED, linewidths=0.5 if thin else max(0.9, 1.3 * w_top),
                                    alpha=0.9 if thin else 0.85)
        ax.add_collection(self.removed)
        ax.add_collection(self.added)
        handles = self.drawing.legend_handles(counts=False)
        handles[2:2] = [Line2D([], [], color=ADDED, lw=2, label="added since the previous frame"),
                        Line2D([], [], color=REMOVED, lw=1.5, ls=(0, (3, 2)), label="removed")]
        self.fig.legend(handles=handles, loc="center", bbox_to_anchor=(0.5, 0.275), ncol=5, frameon=False,
                        fontsize=font * 0.72, handlelength=1.6, columnspacing=1.2)
        self.caption = self.fig.text(0.5, 0.985, "", ha="center", va="top", fontsize=font)
        self._pairs(font)
        self.shown: int | None = None

    def _pairs(self, font: float) -> None:
        """The churn strip: one bar up (added) and one down (removed) per level pair."""
        h = self.history
        dynamic = is_dynamic(h.level, h.attrs)   # a dynamic wiring's pairs are of roles
        col = groups(h.level, h.role, dynamic=dynamic)
        names = group_names(h.level, h.role, dynamic=dynamic, short=True)   # ticks: in, 1, ..., out
        index = np.unique(col, return_inverse=True)[1] if col.size else col
        c = max(len(names), 1)
        cand = h.candidates.numpy()
        pair_of = index[cand[0]] * c + index[cand[1]] if cand.size else np.zeros(0, dtype=np.int64)
        # the level pairs of candidates real in some shown frame (a history keeps only those candidates)
        used = np.unique(np.concatenate([h.real_index(i).numpy() for i in self.frames] + [np.zeros(0, np.int64)]))
        self.pair_ids = np.unique(pair_of[used])
        self.pair_of = np.searchsorted(self.pair_ids, pair_of).clip(0, max(len(self.pair_ids) - 1, 0))
        self.pair_names = [f"{names[p // c]}→{names[p % c]}" for p in self.pair_ids]
        self.changes: list[tuple[np.ndarray, np.ndarray]] = []
        previous = None
        for index_ in self.frames:
            now = h.real_index(index_).numpy()
            if previous is None:
                added = removed = np.zeros(0, dtype=np.int64)
            else:
                added = np.setdiff1d(now, previous, assume_unique=True)
                removed = np.setdiff1d(previous, now, assume_unique=True)
            self.changes.append((added, removed))
            previous = now
        m = len(self.pair_ids)
        per_pair = [(np.bincount(self.pair_of[a], minlength=m), np.bincount(self.pair_of[r], minlength=m))
                    for a, r in self.changes]
        self.pair_counts = per_pair
        top = max([int(max(a.max(initial=0), r.max(initial=0))) for a, r in per_pair], default=0)
        strip = self.fig.add_axes((0.07, 0.06, 0.88, 0.16))
        self.strip = strip
        x = np.arange(m)
        self.bars_added = strip.bar(x, np.zeros(m), width=0.7, color=ADDED)
        self.bars_removed = strip.bar(x, np.zeros(m), width=0.7, color=REMOVED)
        strip.axhline(0, color="#555555", lw=0.6)
        limit = max(top, 1) * 1.15
        strip.set_ylim(-limit, limit)
        strip.set_xlim(-0.6, m - 0.4)
        strip.set_xticks(x, self.pair_names, fontsize=font * 0.62, rotation=0 if m <= 16 else 90)
        strip.tick_params(axis="y", labelsize=font * 0.62)
        strip.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{abs(v):,.0f}"))
        strip.set_ylabel("swaps", fontsize=font * 0.7)
        strip.set_title("swaps per level pair since the previous frame (up: added, down: removed)",
                        fontsize=font * 0.72, loc="left")
        for side in ("top", "right"):
            strip.spines[side].set_visible(False)
        self.pair_labels = [strip.text(i, 0, "", ha="center", va="bottom", fontsize=font * 0.55, color="#333333")
                            for i in range(m)]
        self.pair_labels_removed = [strip.text(i, 0, "", ha="center", va="top", fontsize=font * 0.55,
                                               color="#333333") for i in range(m)]
        self._limit = limit

    def show(self, position: int) -> dict:
        """Draw ``frames[position]``; returns the caption values (step, epoch, test_acc,
        acc_epoch, k, density, dead, added, removed; added/removed None for the first)."""
        h = self.history
        index = self.frames[position]
        wiring = h.frame(index)
        self.drawing.set_edges(wiring.edge_index, wiring.weight)
        dead = dead_of(wiring)
        self.drawing.set_dead(dead)
        added, removed = self.changes[position]
        cand = h.candidates.numpy()
        self.added.set_segments(self.drawing.segments(cand[:, added]))
        self.removed.set_segments(self.drawing.segments(cand[:, removed]))
        if self.thin:  # many swaps: each fainter, so that they show where the change is, not bury the wiring
            swaps = max(added.size + removed.size, 1)
            fade = float(np.clip(np.sqrt(SWAPS_OPAQUE / swaps), 0.25, 1.0))
            width = float(np.clip(1.5 * np.sqrt(50.0 / swaps), 0.5, 1.5))  # a few swaps: wide enough to find
            self.added.set_alpha(0.9 * fade)
            self.removed.set_alpha(0.7 * fade)
            self.added.set_linewidth(width)
            self.removed.set_linewidth(0.9 * width)
        up, down = self.pair_counts[position]
        for i, (bar_a, bar_r) in enumerate(zip(self.bars_added, self.bars_removed)):
            bar_a.set_height(float(up[i]))
            bar_r.set_height(-float(down[i]))
            label = self.pair_labels[i]
            label.set_text(f"+{up[i]:,}" if up[i] else "")
            label.set_y(float(up[i]) + 0.02 * self._limit)
            below = self.pair_labels_removed[i]
            below.set_text(f"−{down[i]:,}" if down[i] else "")
            below.set_y(-float(down[i]) - 0.02 * self._limit)
        info = wiring_info(wiring, self.metrics)
        info.update(dead=len(dead), added=int(added.size) if position else None,
                    removed=int(removed.size) if position else None,
                    since=h.steps[self.frames[position - 1]] if position else None)
        self.caption.set_text(caption(info, self.title))
        self.shown = position
        return info

    def rgba(self) -> np.ndarray:
        """The current picture as an ``[H, W, 4]`` uint8 array (a copy)."""
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba()).copy()


def caption(info: Mapping, title: str = "") -> str:
    """Two lines: ``title · step 50 · epoch 5 · test acc (after epoch 4)`` and
    ``k · density · dead · swaps since step 40``; the epoch is the one the step lies
    in (:func:`viz.sources.epoch_of`: step 50 of 12 steps per epoch is in epoch 5),
    the accuracy the last measured at or before the step; always the edge count (k)
    and the density together."""
    first = [title] if title else []
    first.append(f"step {info['step']:,}" if info.get("step") is not None else "step n/a")
    epoch = info.get("epoch")
    if epoch == 0:
        first.append("before training")
    elif epoch is not None:
        first.append(f"epoch {epoch}")
    acc = info.get("test_acc")
    if acc is None:
        first.append("test acc n/a")
    else:
        after = info.get("acc_epoch")
        first.append(f"test acc {100 * acc:.1f}%" + (f" (after epoch {after})" if after is not None else ""))
    second = [f"k = {info['k']:,} edges",
              "density n/a" if info.get("density") is None else f"density {100 * info['density']:.3g}%"]
    if info.get("dead") is not None:
        second.append(f"dead {info['dead']:,}")
    if info.get("added") is None:
        second.append("first frame")
    else:
        since = f" since step {info['since']:,}" if info.get("since") is not None else ""
        second.append(f"swaps{since}: +{info['added']:,} added / −{info['removed']:,} removed")
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
                size: Sequence[float] = DEFAULT_SIZE, dpi: int = DEFAULT_DPI, title: str | None = None,
                progress: Callable[[int, int], None] | None = None, style: str = "auto",
                strong: int = STRONG_EDGES) -> int:
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
                             title=plain(run.path.name) if title is None else title, size=size, dpi=dpi,
                             style=style, strong=strong)
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


PROG = "python -m viz.animate"


def main(argv: Sequence[str] | None = None) -> int:
    """The command: 0, or 2 and one line ``python -m viz.animate: error: ...``."""
    return run_cli(_main, PROG, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG,
                            description="Animate the wiring snapshots (history.pt) of a run directory.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding history.pt")
    parser.add_argument("-o", "--output", default="evolution.gif",
                        help="output file: .gif or .mp4 (default evolution.gif)")
    parser.add_argument("--fps", type=positive_float, default=4.0, help="frames per second (default 4)")
    parser.add_argument("--max-frames", type=positive_int, default=200,
                        help="at most this many frames, spread evenly, first and last kept (default 200)")
    add_figure_options(parser, DEFAULT_SIZE, DEFAULT_DPI)
    parser.add_argument("--style", choices=STYLES, default="auto",
                        help="edges by the rank of |w| (ranked) or by |w| (weight); auto: ranked from 2,000 edges")
    parser.add_argument("--strong", type=positive_int, metavar="N", default=STRONG_EDGES,
                        help=f"ranked style: about how many edges stand out (default {STRONG_EDGES})")
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
        if os.path.isfile(args.run_dir):
            raise UsageError(f"{args.run_dir} is one wiring, not its evolution: viz.animate needs a run "
                             f"directory with history.pt (draw the file with python -m viz.render)")
        run = load_run_dir(args.run_dir, args.wiring)
        if run.history is None:
            raise UsageError(f"run directory {args.run_dir} has no {run.wiring_file('history', '.pt')}")
        import matplotlib
        matplotlib.use("Agg")
        n = animate_run(run, out, fps=args.fps, max_frames=args.max_frames, size=args.size, dpi=args.dpi,
                        progress=_progress_printer(args.quiet), style=args.style, strong=args.strong)
    except UsageError as err:
        die(prog, str(err))
    except OSError as err:
        die(prog, f"cannot write {args.output}: {err.strerror or err}")
    if not args.quiet:
        print(f"wrote {out} ({n} frames)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
