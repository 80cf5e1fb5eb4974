"""viz: pictures of learned wirings, read from run directories and GraphML files.

* :mod:`viz.layout`: fixed node positions (levels as columns; for dynamic wirings
  inputs | hidden nodes on a circle | outputs), the same for every step of a run.
* :mod:`viz.render`: one wiring as PNG/SVG/PDF (``python -m viz.render``).
* :mod:`viz.animate`: a run's ``history.pt`` as GIF/MP4 (``python -m viz.animate``).
* :mod:`viz.plots`: training curves, churn, degrees and level-to-level
  connectivity of a run (``python -m viz.plots``).
* :mod:`viz.compare`: how one run's wiring differs from another's at the same
  budget, e.g. DNW vs a fixed random graph (``python -m viz.compare``).
* :mod:`viz.explore`: a self-contained interactive HTML page of a run's wiring
  snapshots (``python -m viz.explore``).

The viz reads everything through :mod:`wiring.io`; it never imports the trainer.
"""
