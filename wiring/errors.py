"""The one base of the project's user-facing errors.

A :class:`UserError` is a mistake in what the user gave: a flag, a settings file, a
data folder, a GraphML file, a checkpoint, a run directory. Its message is one
sentence that names the culprit and, where there is one, the fix. Every command
prints it as ``prog: error: message`` on one line of stderr and exits with status 2
(:func:`wiring.cli.run_cli`); a library caller catches it like any exception.

The project's specific errors subclass it and keep the standard base they had, so
``except ValueError`` still catches a :class:`~wiring.graph.GraphError`:

* :class:`~wiring.graph.GraphError` (and :class:`~wiring.io.WiringFileError`):
  an invalid wiring or wiring file;
* :class:`~wiring.train.config.ConfigError`: a setting;
* :class:`~wiring.train.data.DataError`: a data set that is missing or malformed;
* :class:`~wiring.train.checkpoint.CheckpointError`: a checkpoint that cannot be used;
* the commands' own (``wiring.train.pipeline.UsageError``, ``wiring.study.spec.StudyError``,
  ``wiring.analyze.AnalyzeError``, ``viz.render.UsageError``).

This module imports nothing of the project, so every floor may use it.

>>> issubclass(ValueError, UserError), str(UserError("--lr: must be finite"))
(False, '--lr: must be finite')
"""
from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A user mistake; the commands print ``prog: error: <message>`` and exit 2.

    An empty message prints nothing (the other ranks of a distributed run, whose
    rank 0 has said it already)."""
