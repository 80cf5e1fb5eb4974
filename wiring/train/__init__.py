"""Training: one run from its config to its run folder (``python -m wiring.train``).

The path of one run, one module per step:
:mod:`~wiring.train.config` (arguments and YAML -> one ``Config``, flowing one way) ->
:mod:`~wiring.train.data` -> :mod:`~wiring.train.build` (the one config -> model path of every
command: :func:`~wiring.train.build.build_model` through the model registry,
:func:`~wiring.train.build.model_from_checkpoint`) -> :mod:`~wiring.train.pipeline` (run / resume) ->
:mod:`~wiring.train.trainer` (the loop and its hooks, :mod:`~wiring.train.schedule` for the
learning rate, :mod:`~wiring.train.monitor` for the wiring's bookkeeping,
:mod:`~wiring.train.distributed` for DDP) -> :mod:`~wiring.train.recorder` (snapshots,
metrics and checkpoints through :mod:`~wiring.train.checkpoint` and the run-folder names of
:mod:`wiring.io`), :mod:`~wiring.train.tblogger` (``--tensorboard``).
:mod:`~wiring.train.allocator` tunes glibc's malloc for the commands.

Nothing here is imported by the engine, the graph tools or the models.
"""
