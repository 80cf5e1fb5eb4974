"""Tests for wiring.nodeops.NormReLUConv against the usual [B, n, H, W] formulation.

Node-major input ``[n, B*H*W]`` is transposed to ``[B, n, H, W]``, run through
``F.instance_norm`` / ``nn.BatchNorm2d`` -> ReLU -> depthwise ``F.conv2d`` and
transposed back; forward and gradients must agree.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wiring.nodeops import NormReLUConv

N, B, H, W = 4, 3, 6, 5


def to_bchw(x, n=N, b=B, h=H, w=W):
    return x.reshape(n, b, h, w).transpose(0, 1)


def to_node_major(y):
    return y.transpose(0, 1).reshape(y.size(1), -1)


def make_op(norm="instance", **kw):
    torch.manual_seed(0)
    op = NormReLUConv(N, H, W, norm=norm, **kw)
    with torch.no_grad():
        if norm == "instance":
            op.norm_weight.copy_(torch.rand(N) + 0.5)
            op.norm_bias.copy_(torch.randn(N) * 0.3)
        else:
            op.bn.weight.copy_(torch.rand(N) + 0.5)
            op.bn.bias.copy_(torch.randn(N) * 0.3)
    return op


def node_major_input(seed=1, b=B):
    g = torch.Generator().manual_seed(seed)
    # per-node offsets and scales so the normalisation matters
    x = torch.randn(N, b, H, W, generator=g) * torch.arange(1, N + 1).view(N, 1, 1, 1) + 2.0
    return x.reshape(N, -1)


def test_instance_norm_matches_reference_forward_and_backward():
    op = make_op("instance")
    x = node_major_input().requires_grad_()
    out = op(x)
    assert out.shape == (N, B * H * W)
    gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    (out * gout).sum().backward()

    xr = x.detach().clone().requires_grad_()
    nw = op.norm_weight.detach().clone().requires_grad_()
    nb = op.norm_bias.detach().clone().requires_grad_()
    cw = op.conv_weight.detach().clone().requires_grad_()
    ref = F.instance_norm(to_bchw(xr), weight=nw, bias=nb, eps=1e-5)
    ref = F.conv2d(F.relu(ref), cw, padding=1, groups=N)
    ref = to_node_major(ref)
    (ref * gout).sum().backward()

    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(x.grad, xr.grad, **tol)
    torch.testing.assert_close(op.norm_weight.grad, nw.grad, **tol)
    torch.testing.assert_close(op.norm_bias.grad, nb.grad, **tol)
    torch.testing.assert_close(op.conv_weight.grad, cw.grad, **tol)


def test_instance_norm_is_per_sample():
    """Instance norm: a sample's output does not depend on the other samples."""
    op = make_op("instance")
    x = node_major_input()
    full = to_bchw(op(x))
    one = to_bchw(op(to_node_major(to_bchw(x)[1:2])), b=1)
    torch.testing.assert_close(one[0], full[1], rtol=1e-5, atol=1e-5)
    # no running statistics, no buffers
    assert len(list(op.buffers())) == 0


def bn_reference(op):
    ref = nn.BatchNorm2d(N)
    with torch.no_grad():
        ref.weight.copy_(op.bn.weight)
        ref.bias.copy_(op.bn.bias)
    return ref


def test_batch_norm_train_matches_batchnorm2d():
    op = make_op("batch")
    op.train()
    ref = bn_reference(op)
    ref.train()
    cw = op.conv_weight.detach().clone().requires_grad_()
    for seed in (1, 2):
        x = node_major_input(seed).requires_grad_()
        xr = x.detach().clone().requires_grad_()
        out = op(x)
        expected = to_node_major(F.conv2d(F.relu(ref(to_bchw(xr))), cw, padding=1, groups=N))
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 10))
        (out * gout).sum().backward()
        (expected * gout).sum().backward()
        torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-5)
    # batch statistics per node, running stats updated the same way
    torch.testing.assert_close(op.bn.running_mean, ref.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(op.bn.running_var, ref.running_var, rtol=1e-5, atol=1e-6)
    assert int(op.bn.num_batches_tracked) == 2
    torch.testing.assert_close(op.bn.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op.bn.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op.conv_weight.grad, cw.grad, rtol=1e-4, atol=1e-5)


def test_batch_norm_statistics_are_per_node_over_batch():
    op = make_op("batch")
    op.train()
    with torch.no_grad():
        op.bn.weight.fill_(1.0)
        op.bn.bias.fill_(0.0)
    x = node_major_input()
    seen = {}
    op.bn.register_forward_hook(lambda m, i, o: seen.setdefault("o", o))
    op(x)
    normed = seen["o"].reshape(N, -1)
    # every node normalised over its whole batch x H x W
    torch.testing.assert_close(normed.mean(1), torch.zeros(N), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.var(1, unbiased=False), torch.ones(N), atol=1e-3, rtol=0)


def test_batch_norm_eval_uses_running_stats():
    op = make_op("batch")
    op.train()
    op(node_major_input(1))
    op(node_major_input(2))
    op.eval()
    ref = bn_reference(op)
    ref.running_mean.copy_(op.bn.running_mean)
    ref.running_var.copy_(op.bn.running_var)
    ref.eval()
    x = node_major_input(3)
    before = op.bn.running_mean.clone()
    out = op(x)
    assert torch.equal(op.bn.running_mean, before)          # no update in eval
    expected = to_node_major(F.conv2d(F.relu(ref(to_bchw(x))), op.conv_weight, padding=1, groups=N))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # and one sample alone gives the same result as inside the batch
    one = op(to_node_major(to_bchw(x)[2:3]))
    torch.testing.assert_close(to_bchw(one, b=1)[0], to_bchw(out)[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_output_shape_and_stride(norm):
    op = NormReLUConv(3, 8, 8, norm=norm)
    assert op(torch.randn(3, 2 * 64)).shape == (3, 2 * 64)
    assert op.out_size == (8, 8)
    op2 = NormReLUConv(3, 8, 8, norm=norm, stride=2)
    assert op2.out_size == (4, 4)
    assert op2(torch.randn(3, 5 * 64)).shape == (3, 5 * 16)
    op3 = NormReLUConv(3, 8, 6, norm=norm, kernel_size=5)
    assert op3.conv_weight.shape == (3, 1, 5, 5)
    assert op3.out_size == (8, 6)
    assert op3(torch.randn(3, 2 * 48)).shape == (3, 2 * 48)


def test_nodes_do_not_mix():
    op = make_op("instance")
    x = node_major_input()
    out = op(x)
    y = x.clone()
    y[2] = torch.randn(y.size(1))
    out2 = op(y)
    changed = (out2 != out).any(1).tolist()
    assert changed == [False, False, True, False]


def test_parameters():
    op = NormReLUConv(5, 8, 8)
    assert {n for n, _ in op.named_parameters()} == {"norm_weight", "norm_bias", "conv_weight"}
    assert op.conv_weight.shape == (5, 1, 3, 3)
    assert op.norm_weight.tolist() == [1.0] * 5 and op.norm_bias.tolist() == [0.0] * 5
    bn = NormReLUConv(5, 8, 8, norm="batch")
    assert {n for n, _ in bn.named_parameters()} == {"bn.weight", "bn.bias", "conv_weight"}


@pytest.mark.parametrize("norm", ["layer", "Instance", "", None])
def test_invalid_norm(norm):
    with pytest.raises(ValueError, match="norm"):
        NormReLUConv(4, 8, 8, norm=norm)
