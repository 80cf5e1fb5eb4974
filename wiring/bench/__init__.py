"""Benchmarks: the engine raced against the authors' formulation (``python -m wiring.bench``).

:mod:`~wiring.bench.reference` (the authors' dense formulation of the tiny classifier; of MobileNetV1-DNW:
:mod:`~wiring.bench.mobilenet`, ``--model mobilenetv1_dnw``) and
:mod:`~wiring.bench.contest` (the contestants from one seed and the alternating timer) are
shared; :mod:`~wiring.bench.training` (training img/s, the scaling table, the command),
:mod:`~wiring.bench.backends` (``--backend all``), :mod:`~wiring.bench.memory` (peak memory of
one step), :mod:`~wiring.bench.modes` (``--mode``: wiring modes side by side) and
:mod:`~wiring.bench.inference` (``--inference``: the compact model) use them.
Commands, not library: nothing below imports this package.
"""
