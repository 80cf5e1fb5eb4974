"""wiring: learn the connectivity of neural networks while training them (DNW).

The floors, each importing only from its own or lower ones (docs/architecture.md):

* base: :mod:`wiring.errors`, :mod:`wiring.files`, :mod:`wiring.cli`;
* engine: :mod:`wiring.graph` (neural graphs and candidates), :mod:`wiring.topk`,
  :mod:`wiring.modes`, :mod:`wiring.presets`, :mod:`wiring.ops` (the DNW operator),
  :mod:`wiring.nodeops`, :mod:`wiring.layer` (:class:`~wiring.layer.WiredGraph`),
  :mod:`wiring.fused`, :mod:`wiring.backends`, :mod:`wiring.sparsify` (DNW for any model);
* graph tools: :mod:`wiring.io`, :mod:`wiring.topology`, :mod:`wiring.picture`;
* models: the ``models`` package;
* training: :mod:`wiring.train` (``python -m wiring.train``);
* commands: :mod:`wiring.export`, :mod:`wiring.analyze`, :mod:`wiring.profile`,
  :mod:`wiring.compact`, :mod:`wiring.bench`, :mod:`wiring.study`;
* and the ``viz`` package above them, reading run folders and GraphML only.
"""
__version__ = "0.1.0"
