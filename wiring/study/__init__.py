"""Studies: grids of training runs that reproduce the paper's claims at small scale (``python -m wiring.study``).

A *study* is a grid of training runs described by one YAML file::

    name: quick                       # names the default output folder runs/study-<name>
    base:                             # training settings for every cell (wiring.train's flags)
      data: digits
      model: micro
      epochs: 3
      batch-size: 128
    grid:                             # cells = setting x mode x edges x seed
      setting: [static, discrete]
      mode: [dnw, fixed]
      edges: [500, 2000]
      seed: [0, 1]
    curve_edges: 2000                 # optional: the budget of the per-epoch curves
    paper:                            # optional: published numbers printed beside ours
      - label: Table 1
        title: DNW Table 1, CIFAR-10 tiny classifier
        values: {static: {fixed: 76.1 +- 0.5, dnw: 80.9 +- 0.6}}   # setting (or "*") -> mode -> value

Every cell is one call of :func:`wiring.train.pipeline.run` (in this process with ``--jobs 1``,
in worker processes, submitit's local processes or Slurm jobs otherwise) writing ``OUT/<setting>-<mode>-<edges>-s<seed>/``
(``complete`` ignores edges: one cell ``<setting>-complete-all-s<seed>`` per setting
and seed). ``fine_tune`` and ``lottery`` cells start (``--from``) from the trained
``complete`` cell of the same setting and seed (the paper fine-tunes, or rewinds, a
trained complete graph's top-k); without ``complete`` in the grid they start from the
``dnw`` cell of the same setting, edges and seed, and the report says so. Sources run
first.

Optional keys: ``order`` (the grid keys from the outermost loop to the innermost, default
``[mode, edges, seed]``; e.g. ``[edges, seed, mode]`` finishes every seed of a budget's
modes together, for paired comparisons) and ``mode_edges`` (``{mode: [edges, ...]}``: a mode
runs at only those of ``grid.edges``).

The study is resumable from two sources. Its **results file** (``--results``, default the
report's name with ``.jsonl``: ``OUT/results.jsonl``) holds one JSON line per finished cell
with its metrics per epoch, the final wiring's statistics and the cell's training settings;
it is small enough to commit, and a cell recorded there with the same settings is never
trained again, even when its run folder is gone. Otherwise a cell whose ``wiring.graphml``
exists is done (and recorded), a cell with a checkpoint but no final wiring is continued
with ``--resume``, anything else starts afresh. A failed cell is reported
(``OUT/logs/<cell>.error``, its training output in ``OUT/logs/<cell>.log``) and the study
goes on; cells that need it are skipped (a fine_tune / lottery cell also needs its
source's run folder, which the results file does not replace). A record is appended whole or
not at all, a last one cut short is dropped at the next append, and a record that is not sound
is refused naming the file and line (:func:`~wiring.study.results.record_problem`).

Before the first cell trains (and for ``--dry-run``) the grid's size and every cell are
checked (:mod:`~wiring.study.checks`). One study at a time holds ``OUT`` (a lock, as a run
folder's). The cells run on an executor (:mod:`~wiring.study.executors`: ``--executor jobs``
with ``--jobs N``, ``local`` or ``slurm`` through submitit); whichever ran them, the results
file, run folders and report are the same. SIGINT / SIGTERM stop the cells under way with
their checkpoints of the moment (exit 130 / 143).

At the end (and with ``--report-only``, from the results file and the run folders) it writes
``OUT/results.csv`` (one row per cell) and a Markdown report (``OUT/results.md`` unless
``--report`` names another, e.g. a committed one in docs/) with the budget, a mean +- std
table per (setting, mode, edges) beside the paper's numbers, one line per setting on whether
DNW beats the random graph at each budget, and plots next to it (``<report>_edges.png``,
``<report>_curves.png``); every one of these files is replaced atomically (:mod:`wiring.files`).

    python -m wiring.study configs/study_quick.yaml --dry-run      # the cells, in order
    python -m wiring.study configs/study_quick.yaml --out runs/q    # run (resumable) and report
    python -m wiring.study configs/study_quick.yaml --out runs/q --report-only
    python -m wiring.study configs/study_quick.yaml --executor slurm --partition P --time 30

One module per job: :mod:`~wiring.study.spec` (the YAML file -> :class:`~wiring.study.spec.Study`,
its ordered :class:`~wiring.study.spec.Cell` list, each cell's training config),
:mod:`~wiring.study.checks` (every cell checked up front), :mod:`~wiring.study.cell` (one cell:
:func:`~wiring.study.cell.train_cell`), :mod:`~wiring.study.executors` (where cells run),
:mod:`~wiring.study.runner` (:func:`~wiring.study.runner.run_study`),
:mod:`~wiring.study.results` (the results file, the rows, paired differences),
:mod:`~wiring.study.report` (the Markdown report), :mod:`~wiring.study.plots` and
:mod:`~wiring.study.command` (the command line).
"""
