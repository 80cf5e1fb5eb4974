"""wiring.fused: the whole static graph in one autograd node equals the level-by-level run."""
from __future__ import annotations

import pytest
import torch

import models.tiny
from models.tiny import TinyClassifier
from wiring import backends, fused
from wiring.backends import kernels
from wiring.graph import static_graph
from wiring.layer import WiredGraph
from wiring.nodeops import NormReLUConv

needs_native = pytest.mark.skipif(kernels.library() is None, reason="native kernels unavailable")


def _grads(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    logits = model(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    out = {"logits": logits.detach()}
    out.update({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    return out




@needs_native
@pytest.mark.parametrize("mode, edges", [("dnw", 60), ("dnw_no_update", 60), ("fixed", 60), ("complete", None),
                                         ("dnw", 300)])
def test_tiny_classifier_fused_equals_level_by_level(monkeypatch, mode, edges, product_backend):
    # 8 + 3 x 6 op nodes, 5 outputs; 300 of 382 edges make the levels dense (the dense branch, but
    # a named product_backend turns the dense switch off: its kernel computes every product)
    torch.manual_seed(0)
    model = TinyClassifier(image_size=8, edges=edges, mode=mode, levels=(8, 6, 6, 6), outputs=5).double()
    with torch.no_grad():
        for op in model.node_ops:
            op.norm_weight.uniform_(0.5, 1.5)
            op.norm_bias.uniform_(-0.3, 0.3)
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 4, 7])
    calls = []
    real_run = fused.run_static
    monkeypatch.setattr(models.tiny.fused, "run_static", lambda *a, **k: calls.append(1) or real_run(*a, **k))
    fast = _grads(model, x, y)
    assert calls == [1]
    monkeypatch.setattr(models.tiny.fused, "supported", lambda *args: False)
    with backends.using("torch"):                                   # the level-by-level run on torch.sparse
        slow = _grads(model, x, y)
    assert fast.keys() == slow.keys() and "graph.weight" in fast
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-10, atol=1e-12, msg=name)


@needs_native
def test_every_candidate_gets_its_gradient_only_with_grad_all():
    torch.manual_seed(1)
    model = TinyClassifier(image_size=8, edges=30, mode="fixed", levels=(8, 6, 6), outputs=5).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([1, 2])).backward()
    real = model.graph.frozen_mask
    assert bool((model.graph.weight.grad[~real] == 0).all())
    assert bool((model.graph.weight.grad[real] != 0).any())


def test_supported_says_no_to_what_it_cannot_run():
    layer = WiredGraph(static_graph([2, 3, 2]), edges=6, seed=0)
    x = torch.randn(2, 3 * 4)
    assert not fused.supported(layer, [NormReLUConv(3, 2, 2)], x)                 # one op per level, None last
    assert not fused.supported(layer, [NormReLUConv(3, 2, 2, norm="batch"), None], x)
    assert not fused.supported(layer, [NormReLUConv(4, 2, 2), None], x)           # wrong node count
    assert fused.supported(layer, [NormReLUConv(3, 2, 2), None], x) == (kernels.library() is not None)
    assert not fused.supported(layer, [NormReLUConv(3, 2, 2), None], x.to(torch.bfloat16))


def test_doctests():
    import doctest
    assert doctest.testmod(fused).failed == 0
