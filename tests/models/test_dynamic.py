"""Dynamic graphs: discrete-time (recurrent) and continuous-time (neural ODE) models."""
from __future__ import annotations

import pytest
import torch

from models import create_model
from models.dynamic import DynamicClassifier
from wiring.graph import dynamic_graph
from wiring.layer import WiredGraph
from wiring.ops import propagate

torchdiffeq = pytest.importorskip("torchdiffeq", reason="the continuous setting needs torchdiffeq")


def tiny_dynamic(setting: str, mode: str = "fixed", **kw) -> DynamicClassifier:
    torch.manual_seed(0)
    return DynamicClassifier(setting=setting, in_channels=1, num_classes=3, image_size=8, nodes=6, inputs=2,
                             outputs=2, edges=12, mode=mode, **kw).double()


@pytest.mark.parametrize("setting, options", [
    ("discrete", {"steps": 3}),
    ("continuous", {"solver": "rk4", "rtol": 1e-9, "atol": 1e-9}),   # fixed-step: smooth in the inputs
])
def test_gradients_match_finite_differences_in_float64(setting, options):
    """With the real set frozen (mode fixed) the dynamics are differentiable: autograd equals
    finite differences for the state and for every candidate weight (0 for hallucinated ones)."""
    model = tiny_dynamic(setting, "fixed", **options)
    layer = model.graph
    real = layer.real_mask()
    base, pattern = torch.randn(2, 6, 64, dtype=torch.float64)              # batch 1 of 8x8 maps
    v0 = torch.randn(6, dtype=torch.float64, requires_grad=True)            # the state along one direction per node
    w0 = layer.weight.detach().clone().requires_grad_()

    def f(v, w):
        z = base + v[:, None] * pattern
        def dynamics(state):
            return model.node_op(propagate(state, w, layer.edge_index, real, num_targets=6,
                                           blocks=layer.graph.blocks, grad_all=False))
        if setting == "discrete":
            for _ in range(3):
                z = dynamics(z)
            return z[-2:].sum(dim=1)
        times = torch.tensor([0.0, 1.0], dtype=torch.float64)
        return torchdiffeq.odeint(lambda t, s: dynamics(s), z, times, method="rk4",
                                  options={"step_size": 0.5})[-1][-2:].sum(dim=1)

    assert torch.autograd.gradcheck(f, (v0, w0), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("setting", ["discrete", "continuous"])
def test_model_gradient_to_real_edges_equals_finite_difference(setting):
    """The model's own forward: d loss / d w_e for a real edge, autograd vs central difference."""
    model = tiny_dynamic(setting, "dnw", **({"solver": "rk4"} if setting == "continuous" else {"steps": 3}))
    model.eval()                     # InstanceNorm has no running stats: eval == train numerically
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    loss = model(x).square().sum()
    loss.backward()
    grad = model.graph.weight.grad.clone()
    real = model.graph.real_mask().nonzero().flatten()
    eps = 1e-6
    for e in real[:4].tolist():
        with torch.no_grad():
            model.graph.weight[e] += eps
            plus = model(x).square().sum()
            model.graph.weight[e] -= 2 * eps
            minus = model(x).square().sum()
            model.graph.weight[e] += eps
        assert model.graph.real_mask().nonzero().flatten().tolist() == real.tolist()
        assert float(grad[e]) == pytest.approx(float((plus - minus) / (2 * eps)), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("setting", ["discrete", "continuous"])
def test_exactly_k_real_edges_and_dnw_swaps(setting):
    torch.manual_seed(0)
    model = create_model("micro", setting=setting, in_channels=1, image_size=8, edges=200, mode="dnw",
                        **({"solver": "rk4"} if setting == "continuous" else {}))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    masks = []
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        mask = model.graph.real_mask()
        assert int(mask.sum()) == 200
        masks.append(mask)
    assert any(not torch.equal(a, b) for a, b in zip(masks, masks[1:])), "DNW should swap edges"


def test_dynamic_candidates_allow_cycles_and_no_self_loops_by_default():
    model = create_model("micro", setting="discrete", in_channels=1, image_size=8, edges=100)
    ei = model.graph.edge_index
    assert model.graph.num_candidates == 56 * 55
    assert not bool((ei[0] == ei[1]).any())
    with_loops = create_model("micro", setting="discrete", in_channels=1, image_size=8, edges=100, self_loops=True)
    assert with_loops.graph.num_candidates == 56 * 56


def test_ode_setting_trains_and_the_loss_goes_down():
    torch.manual_seed(0)
    model = create_model("micro", setting="continuous", in_channels=1, image_size=8, edges=300)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))      # a tiny batch to fit
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.2, losses
    metrics = model.pop_metrics()
    assert metrics["nfe"] >= 6 and metrics["nfe_total"] >= 8 * 6     # dopri5: 6 evaluations per step at least
    assert model.pop_metrics() == {}


def test_ode_steps_split_the_interval_into_equal_fixed_steps():
    model = create_model("micro", setting="continuous", in_channels=1, image_size=8, edges=100, solver="rk4",
                        ode_steps=3)
    model(torch.randn(2, 1, 8, 8))
    assert model.pop_metrics() == {"nfe": 12.0, "nfe_total": 12}      # 3 rk4 steps of 1/3, 4 evaluations each
    euler = create_model("micro", setting="continuous", in_channels=1, image_size=8, edges=100, solver="euler",
                        ode_steps=5)
    euler(torch.randn(2, 1, 8, 8))
    assert euler.pop_metrics()["nfe"] == 5.0


def test_fixed_step_solver_counts_exactly_its_evaluations():
    model = create_model("micro", setting="continuous", in_channels=1, image_size=8, edges=100, solver="rk4")
    model(torch.randn(2, 1, 8, 8))
    model(torch.randn(2, 1, 8, 8))
    assert model.pop_metrics() == {"nfe": 4.0, "nfe_total": 8}        # rk4 over the grid [0, 1]: 4 each
    model.eval()
    model(torch.randn(2, 1, 8, 8))
    assert model.pop_metrics() == {}


def test_discrete_is_the_same_engine_as_a_hand_unrolled_recurrence():
    graph = dynamic_graph(5, inputs=1, outputs=1)
    layer = WiredGraph(graph, edges=7, seed=3).double()
    z = torch.randn(5, 4, dtype=torch.float64)
    sel = layer.select()
    dense = torch.zeros(5, 5, dtype=torch.float64)
    real = sel.mask.nonzero().flatten()
    dense[layer.edge_index[1, real], layer.edge_index[0, real]] = layer.weight.detach()[real]
    a, b = z, z
    for _ in range(3):
        a = torch.tanh(layer.aggregate(a, sel))
        b = torch.tanh(dense @ b)
    assert torch.allclose(a, b)


def test_missing_torchdiffeq_is_one_clear_error(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torchdiffeq":
            raise ImportError("No module named 'torchdiffeq'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from models.dynamic import MissingDependency
    with pytest.raises(MissingDependency, match="pip install torchdiffeq"):
        create_model("micro", setting="continuous", in_channels=1, image_size=8, edges=100)


def test_cli_trains_both_dynamic_settings(tmp_path):
    import json

    import networkx as nx

    from wiring.train.pipeline import main
    for setting in ("discrete", "continuous"):
        out = tmp_path / setting
        assert main(["--model", "micro", "--setting", setting, "--edges", "150", "--epochs", "1",
                     "--batch-size", "512", "--progress", "none", "--steps", "2", "--solver", "rk4",
                     "--out", str(out)]) == 0
        metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        assert metrics["edges"] == 150
        G = nx.read_graphml(out / "wiring.graphml")
        assert (metrics["depth"] is None) == (not nx.is_directed_acyclic_graph(G))
        if setting == "continuous":
            assert metrics["nfe"] == 4.0
        G = nx.read_graphml(out / "wiring.graphml")
        assert G.number_of_edges() == 150 and G.graph["static"] is False
