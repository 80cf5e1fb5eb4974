"""wiring.bench.mobilenet: the dense masked MobileNetV1-DNW is the engine's network, and the CLI races them."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from wiring.bench.mobilenet import DenseMobileNetReference, make_mobilenet
from wiring.bench.training import main


def small_pair():
    engine = make_mobilenet(width=0.0625, image_size=16, node_width=0.125, seed=3).double()
    return engine, DenseMobileNetReference(engine).double()


def test_reference_equals_the_engine_in_outputs_and_every_candidate_gradient():
    engine, reference = small_pair()
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    a, b = engine(x), reference(x)                       # training mode: batch statistics in both
    assert torch.allclose(a, b, atol=1e-10)
    F.cross_entropy(a, y).backward()
    F.cross_entropy(b, y).backward()
    for stage, ref in zip(engine.stages, reference.stages):
        ei = stage.graph.edge_index
        dense_grad = ref.weight.grad[ei[1], ei[0]]
        assert torch.allclose(stage.graph.weight.grad, dense_grad, atol=1e-10)
        assert torch.count_nonzero(dense_grad[~stage.graph.real_mask()]) > 0   # hallucinated edges too
    for op, conv in zip(engine.stages[2].ops, reference.stages[2].convs):
        assert torch.allclose(op.conv_weight.grad, conv.grad, atol=1e-10)


def test_reference_top_k_is_the_engines_real_set_per_stage():
    engine, reference = small_pair()
    for stage, mask in zip(engine.stages, reference.masks()):
        ei = stage.graph.edge_index
        assert int(mask.sum()) == stage.graph.k
        assert torch.equal(mask[ei[1], ei[0]], stage.graph.real_mask())


def test_cli_races_mobilenet_and_reports_json(capsys):
    assert main(["--model", "mobilenetv1_dnw", "--width", "0.0625", "--batch-size", "2", "--image-size", "16",
                 "--repeats", "1", "--warmup", "0", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["outputs_agree"] is True and row["model"] == "mobilenetv1_dnw"
    assert row["engine_img_s"] > 0 and row["reference_img_s"] > 0
    assert row["ratio"] == pytest.approx(row["reference_step_ms"] / row["engine_step_ms"], rel=0.01)


@pytest.mark.parametrize("argv, message", [
    (["--width", "0.01"], "--width 0.01 leaves a layer of 32 channels with none"),
    (["--width", "2"], "--width: the benchmark takes widths up to 1"),
    (["--batch-size", "0"], "--batch-size, --repeats and --threads must be positive"),
])
def test_cli_refuses_a_bad_mobilenet_setting_in_one_line(argv, message, capsys):
    assert main(["--model", "mobilenetv1_dnw", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
