"""An interactive wiring explorer: one self-contained HTML page per run.

Contract:

* :func:`explorer_html` turns a run directory (its ``history.pt`` snapshots, else
  its final wiring) or a GraphML file (one frame) into ONE HTML file: the script,
  the styles and the data are inlined; the page loads nothing (no server, no
  network, no CDN) and works from ``file://``.
* The picture is the fixed layout of :mod:`viz.layout`, drawn like
  :mod:`viz.render` (layered columns with arcs for skip connections; for dynamic
  wirings inputs | hidden nodes on a circle | outputs, each group labelled, bent chords and
  arrowheads on the strongest edges (all up to 400; ranked: the 250 strongest); blue / red by
  weight sign, opacity and width growing with ``|weight|``, or from 2,000 edges
  with the RANK of ``|w|`` in the frame, the 250 strongest standing out; dead
  nodes hollow grey) on a ``<canvas>``; only the swaps since the previous frame
  are highlighted (added green, removed dashed orange; from 2,000 edges thin,
  fainter the more there are, as in :mod:`viz.animate`).
* Controls: a slider over the snapshots, play / pause, previous / next, speed;
  keys left / right / space / Home / End. The page opens at the last frame (the learned
  wiring; Home goes to the first, the initial wiring). Frames count from 1 wherever a user
  sees them: ``page.html#frame=N`` opens the frame labelled "frame N / S" (clamped to 1..S;
  only the scripting hook ``window.explorer.frame`` / ``goTo`` counts from 0). Levels are
  named as in every picture, by the names the payload carries
  (:func:`wiring.picture.level_name`: ``inputs``, ``level N``, ``outputs`` in the column
  labels and hover text, ``in``, ``N``, ``out`` in the level table; a dynamic wiring's
  nodes by role). Hover a node or an edge for its id,
  level, weight and the step it appeared (the first step of its current run of
  consecutive frames as a real edge). The side panel gives the step, the epoch
  it lies in (:func:`viz.sources.epoch_of`), the test accuracy (the last epoch
  record of ``metrics.jsonl`` whose ``step`` is at most the frame's step, and
  which epoch that was), k, density, dead nodes, the churn (edges added / removed
  since the previous frame) and the level-to-level edge counts of the frame.
* Data (see :func:`build_payload`): the edges real in at least one frame form
  the edge table (candidate id, source, target); frame 0 and each later frame are
  shipped as differences: added / removed edge-table ids and the weights that
  changed, quantised to int8 (``q * scale / 127``, ``scale`` the largest
  ``|weight|``). :func:`decode_frames` reads them back (the page does the same in
  JavaScript); the real edge set of every frame is reproduced exactly and every
  weight to within half a quantisation step.

One module per job: :mod:`~viz.explore.frames` (a run or file -> :class:`Frames`),
:mod:`~viz.explore.payload` (the encoding), :mod:`~viz.explore.page` (the page, from
``page.html``, ``explore.css`` and ``explore.js`` beside it) and :mod:`~viz.explore.command`.

CLI::

    python -m viz.explore RUN_DIR|FILE.graphml [-o wiring.html] [--title TEXT]

User mistakes (missing or malformed input, output folder missing) exit with
status 2 and one line on stderr; the output appears only once complete.
"""
from __future__ import annotations

from viz.cli import UsageError
from viz.explore.command import PROG, main
from viz.explore.frames import Frames, frames_of_run, frames_of_wiring, load_frames
from viz.explore.page import HTML_FORMATS, explorer_html, read_payload, write_explorer
from viz.explore.payload import FORMAT_VERSION, build_payload, decode_frames, quantise

__all__ = [
    "HTML_FORMATS",
    "FORMAT_VERSION",
    "Frames",
    "frames_of_run",
    "frames_of_wiring",
    "load_frames",
    "quantise",
    "build_payload",
    "decode_frames",
    "explorer_html",
    "read_payload",
    "write_explorer",
    "main",
    "UsageError",
    "PROG",
]
