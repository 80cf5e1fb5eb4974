"""wiring: learn the connectivity of neural networks while training them (DNW).

Engine: :mod:`wiring.graph` (neural graphs and candidates), :mod:`wiring.ops`
(the DNW operator), :mod:`wiring.modes`, :mod:`wiring.presets`,
:mod:`wiring.layer` (:class:`WiredGraph`). Graph tools: :mod:`wiring.io`,
:mod:`wiring.topology`. Training: :mod:`wiring.train.config`, :mod:`wiring.train.data`,
:mod:`wiring.train.trainer`, :mod:`wiring.train` (CLI).
"""
__version__ = "0.1.0"
