"""The tiny classifier with a dynamic (cyclic) graph: discrete and continuous time.

The DNW paper's dynamic setting (Table 1's discrete- and continuous-time rows):

* one :func:`~wiring.graph.dynamic_graph` of ``nodes`` channel nodes (default 800:
  the first 32 are the input nodes, the last 100 the output nodes); candidates are
  all ordered pairs (self-loops off unless asked for), so wirings may have cycles;
* state ``Z`` ``[nodes, batch*8*8]``: the input nodes start from the stem (the same
  stem as :mod:`models.tiny`), every other node at 0;
* **discrete time**: ``Z <- f(A Z)`` applied ``steps`` times (default 5) with one shared
  wiring ``A`` (the real edges) and shared node ops ``f`` (InstanceNorm -> ReLU ->
  depthwise 3x3 per node);
* **continuous time**: ``dZ/dt = f(A Z)`` integrated over ``t in [0, 1]`` with
  torchdiffeq's ``odeint`` (default ``dopri5``, ``rtol = atol = 1e-3``; a fixed-step
  solver such as ``rk4`` takes ``ode_steps`` steps of size ``1/ode_steps``), gradients by
  backpropagation through the solver. torchdiffeq is an optional dependency
  (``pip install torchdiffeq`` or the ``ode`` extra), imported only here;
* head: the output nodes' states at the end, pooled as in :mod:`models.tiny`.

The real set is selected once per forward, so every step or function evaluation of
one forward uses the same wiring; DNW's hallucinated-edge gradients accumulate over
them. The continuous model counts function evaluations (:meth:`pop_metrics`).

Initialisation (``init``): ``"authors"`` (the default) is PyTorch's default of the
authors' modules, a dense ``nodes x nodes`` 1x1 convolution and one
``nn.Conv2d(nodes, nodes, 3, groups=nodes)``: every candidate edge weight
``U(-1/sqrt(S), 1/sqrt(S))`` with ``S`` the nodes that send edges (all of them: 800,
+-0.035, std 0.020) and node kernels ``U(-1/3, 1/3)`` (fan-in 9, std 0.19).
``"kaiming"``: edges normal with std ``sqrt(2 / mean candidate fan-in)`` (0.050 for
800 nodes) and node kernels ``kaiming_normal_(fan_out)``, std ``sqrt(2 / (9 nodes))``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.registry import DEFAULT_EDGES, register
from models.tiny import GRID, Stem, TinyClassifier, centre_pool, node_major
from wiring.graph import dynamic_graph
from wiring.layer import WiredGraph
from wiring.modes import Selection
from wiring.nodeops import NormReLUConv

SETTINGS = ("discrete", "continuous")
# torchdiffeq's fixed-step methods: with these, ``ode_steps`` equal steps of size 1/ode_steps cover [0, 1].
FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")


class MissingDependency(ImportError):
    """An optional package a setting needs is not installed; the message says how to get it."""


def _odeint():
    try:
        from torchdiffeq import odeint
    except ImportError:
        raise MissingDependency("the continuous-time setting needs torchdiffeq: pip install torchdiffeq "
                                "(or pip install 'wiring[ode]')") from None
    return odeint


class DynamicClassifier(nn.Module):
    """Stem -> a dynamic graph run for ``steps`` (discrete) or over [0, 1] (continuous) -> head."""

    def __init__(self, *, setting: str = "discrete", in_channels: int = 3, num_classes: int = 10,
                 image_size: int = 32, edges: int | None = DEFAULT_EDGES, mode: str = "dnw", preset: str = "random_k",
                 seed: int = 0, nodes: int = 800, inputs: int = 32, outputs: int = 100, steps: int = 5,
                 solver: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-3, ode_steps: int = 1,
                 self_loops: bool = False,
                 preset_options: dict | None = None, mode_options: dict | None = None,
                 init: str = "authors", candidate_grad_every: int = 1) -> None:
        super().__init__()
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
        if steps <= 0 or ode_steps <= 0:
            raise ValueError(f"steps and ode_steps must be positive, got {steps} and {ode_steps}")
        self.setting, self.steps = setting, steps
        self.solver, self.rtol, self.atol, self.ode_steps = solver, rtol, atol, ode_steps
        self._odeint = _odeint() if setting == "continuous" else None
        self.inputs, self.outputs = inputs, outputs
        self.stem = Stem(in_channels, image_size, inputs)
        graph = dynamic_graph(nodes, inputs=inputs, outputs=outputs, self_loops=self_loops)
        self.graph = WiredGraph(graph, edges, mode, preset, seed, preset_options, mode_options, init=init,
                                candidate_grad_every=candidate_grad_every)      # edges None: every candidate
        self.node_op = NormReLUConv(nodes, GRID, GRID, init=init)
        self.fc = nn.Linear(outputs, num_classes)
        self._nfe = 0
        self._forwards = 0

    def dynamics(self, z: Tensor, selection: Selection) -> Tensor:
        """``f(A z)``: one application of the wiring and the node ops."""
        return self.node_op(self.graph.aggregate(z, selection))

    def initial_state(self, x: Tensor) -> Tensor:
        stem = node_major(self.stem(x))
        rest = stem.new_zeros(self.graph.graph.num_nodes - self.inputs, stem.size(1))
        return torch.cat([stem, rest])

    def run(self, z: Tensor) -> Tensor:
        """Evolve a node-major state ``z`` ``[nodes, F]`` to its final value."""
        selection = self.graph.select()
        if self.setting == "discrete":
            for _ in range(self.steps):
                z = self.dynamics(z, selection)
            return z
        nfe = 0

        def derivative(t: Tensor, state: Tensor) -> Tensor:
            nonlocal nfe
            nfe += 1
            return self.dynamics(state, selection)

        times = torch.tensor([0.0, 1.0], dtype=z.dtype, device=z.device)
        options = {"step_size": 1.0 / self.ode_steps} if self.solver in FIXED_STEP_SOLVERS else None
        out = self._odeint(derivative, z, times, method=self.solver, rtol=self.rtol, atol=self.atol,
                           options=options)[-1]
        if self.training:
            self._nfe += nfe
            self._forwards += 1
        return out

    def forward(self, x: Tensor) -> Tensor:
        z = self.run(self.initial_state(x))
        return self.fc(centre_pool(z[-self.outputs:], x.size(0)))

    def pop_metrics(self) -> dict[str, float]:
        """Function evaluations of the training forwards since the last call (continuous)."""
        if self.setting != "continuous" or not self._forwards:
            return {}
        out = {"nfe": round(self._nfe / self._forwards, 2), "nfe_total": self._nfe}
        self._nfe = self._forwards = 0
        return out


# ----------------------------------------------------------------------------- the registered classifiers

#: the options of the tiny and micro classifiers besides the common ones: the dynamic settings'
SETTING_OPTIONS = ("steps", "solver", "rtol", "atol", "ode_steps", "self_loops")


@register("tiny", options=SETTING_OPTIONS, settings=("static", "discrete", "continuous"))
def tiny_classifier(setting: str = "static", **options) -> nn.Module:
    """The paper's tiny classifier: static (900 nodes, 325,760 candidates) or dynamic
    (800 nodes, 639,200 candidates: all ordered pairs)."""
    if setting == "static":
        return TinyClassifier(**options)
    return DynamicClassifier(setting=setting, **options)


@register("micro", options=SETTING_OPTIONS, settings=("static", "discrete", "continuous"))
def micro_classifier(setting: str = "static", **options) -> nn.Module:
    """A narrow version for tests and quick demos: static 66 nodes / 1,712 candidates,
    dynamic 56 nodes / 3,080 candidates."""
    if setting == "static":
        return TinyClassifier(levels=(8, 16, 16, 16), outputs=10, **options)
    return DynamicClassifier(setting=setting, nodes=56, inputs=8, outputs=10, **options)
