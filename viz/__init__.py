"""viz: pictures of learned wirings, read from run directories and GraphML files.

* :mod:`viz.layout`: fixed node positions (levels as columns, or a circle for
  dynamic wirings), the same for every step of a run.
* :mod:`viz.render`: one wiring as PNG/SVG/PDF (``python -m viz.render``).
* :mod:`viz.animate`: a run's ``history.pt`` as GIF/MP4 (``python -m viz.animate``).
* :mod:`viz.plots`: training curves, churn, degrees and level-to-level
  connectivity of a run (``python -m viz.plots``).

The viz reads everything through :mod:`wiring.io`; it never imports the trainer.
"""
