"""wiring.profile: MACs and parameters of the inference network (real edges, live nodes)."""
from __future__ import annotations

import json
import re

import networkx as nx
import pytest
import torch

from models import create_model
from models.cost import inference_parameters
from models.mobilenet import MobileNetV1DNW
from wiring.graph import dynamic_graph
from wiring.io import to_networkx
from wiring.layer import WiredGraph
from wiring.profile import live_nodes, main, profile_model
from wiring.topology import dead_nodes

pytestmark = pytest.mark.usefixtures("one_thread")



# Hand-made network: stem 1 -> 2 channels on 8x8; stage 1 levels [2, 3] (one block, stride 1,
# k = 2*3 = 6 = every candidate); stage 2 levels [3, 2, 2] (two blocks, stride 2 -> 4x4,
# k = 3*2 + 2*2 = 10 of 16 candidates); dense classifier 2 -> 2.
HAND_STAGES = ((2, 3, 1, 1), (3, 2, 2, 2))
# stage-2 real edges (node ids: level 0 = 0,1,2; level 1 = 3,4; level 2 = outputs 5,6):
# node 4 feeds nothing and node 2 feeds only node 4, so both are dead.
HAND_REAL = [(0, 3), (1, 3), (2, 4), (0, 4), (1, 4), (0, 5), (1, 5), (3, 5), (0, 6), (3, 6)]


def hand_model(small: bool = False) -> MobileNetV1DNW:
    torch.manual_seed(0)
    m = MobileNetV1DNW(width=1.0, stages=HAND_STAGES, in_channels=1, num_classes=2, image_size=8, small=small)
    layer = m.stages[1].graph
    ei = layer.edge_index.t().tolist()
    weight = torch.full((layer.num_candidates,), 0.01)
    for u, v in HAND_REAL:
        weight[ei.index([u, v])] = 1.0 if (u + v) % 2 else -1.0
    with torch.no_grad():
        layer.weight.copy_(weight)
    assert layer.k == 10 and int(layer.real_mask().sum()) == 10
    return m


def test_hand_made_dead_nodes_exact_counts():
    m = hand_model()
    masks = m.live_masks()
    assert masks[1].tolist() == [True, True, False, True, False, True, True]
    assert masks[0].tolist() == [True, True, True, True, False]      # stage-1 output 4 = stage-2 input 2
    cost = profile_model(m)
    # stem 1*9*2*64; stage 1: 2 op nodes * 9 * 64 + 4 edges * 64; stage 2: 3 op nodes * 9 * 16
    # + 7 live edges * 16; classifier 2 * 2
    assert cost["macs"] == 1152 + (1152 + 256) + (432 + 112) + 4 == 3108
    # stem 18; ops (9 conv + 2 BN) per live op node; edges; final BN 2*2; fc 2*2 + 2
    assert cost["params"] == 18 + (22 + 4) + (33 + 7) + 4 + 6 == 94
    assert [p["macs"] for p in cost["parts"]] == [1152, 1408, 544, 4]
    # the same dead set as wiring.topology on the stage's wiring (every node here is reached)
    assert dead_nodes(to_networkx(m.stages[1].graph.wiring())) == {2, 4}


def test_hand_made_small_variant_counts_its_classifier_graph():
    m = hand_model(small=True)
    cost = profile_model(m)
    # the classifier graph [2, 2] with k = 2 * 2: all four edges real, a bias per class
    assert cost["macs"] == 3108 and cost["params"] == 94


def test_live_nodes_matches_networkx_reverse_reachability():
    torch.manual_seed(0)
    layer = WiredGraph(dynamic_graph(12, inputs=3, outputs=3), edges=14, seed=1)
    live = live_nodes(layer)
    G = to_networkx(layer.wiring())
    outputs = [n for n, r in G.nodes(data="role") if r == "output"]
    expected = set(outputs).union(*(nx.ancestors(G, o) for o in outputs))
    assert set(live.nonzero().flatten().tolist()) == expected


@pytest.mark.parametrize("width, macs, params", [(0.25, 41e6, 0.47e6), (0.5, 149e6, 1.3e6)])
def test_dense_mobilenet_standard_figures(width, macs, params):
    m = create_model("mobilenetv1", width=width, num_classes=1000, image_size=224)
    cost = profile_model(m, image_size=224)
    assert cost["macs"] == pytest.approx(macs, rel=0.03)
    assert cost["params"] == pytest.approx(params, rel=0.03)
    assert cost["params"] == sum(p.numel() for p in m.parameters())


def test_untrained_dnw_counts_every_real_edge_when_all_live():
    m = create_model("mobilenetv1_dnw", width=0.0625, node_width=0.0625, num_classes=10, image_size=8,
                    edges=None)                                  # every candidate real: all live
    cost = profile_model(m)
    assert [p["edges"] for p in cost["parts"][1:-1]] == [f"{s.graph.k}/{s.graph.k}" for s in m.stages]
    assert cost["params"] == sum(p.numel() for p in m.parameters())
    # MACs: stem + per stage (9 per op node + 1 per edge) per output position + classifier
    expected = 3 * 9 * 2 * 64 + 10 * 64
    for s in m.stages:
        g = s.graph.graph
        expected += (9 * g.level_ptr[-2] + g.num_candidates) * s.out_size[0] * s.out_size[1]
    assert cost["macs"] == expected


def test_tiny_classifier_counts_real_edges_into_live_nodes_and_live_node_ops():
    m = create_model("micro", num_classes=10, image_size=8, edges=100)
    cost = profile_model(m, in_channels=3, image_size=8)
    total = sum(p.numel() for p in m.parameters())
    live = live_nodes(m.graph)
    real = m.graph.real_mask()
    into_live = int(live[m.graph.edge_index[1, real]].sum())
    dead_ops, dead_inputs = int((~live[:56]).sum()), int((~live[:8]).sum())   # 56 op nodes, 8 inputs
    assert dead_ops > dead_inputs > 0 and into_live < 100              # the case has dead nodes
    # a node op: norm pair + 3x3 kernel = 11; a stem channel: 1x1 conv row of 4 + bias + BN pair = 7
    assert cost["params"] == inference_parameters(m) == \
        total - m.graph.num_candidates + into_live - 11 * dead_ops - 7 * dead_inputs
    assert cost["macs"] > 0 and cost["dead_nodes_removed"]


def hand_tiny(edges: list[tuple[int, int]]):
    """A tiny classifier on levels [2, 3, 3] + 2 outputs (nodes 0-1 | 2-4 | 5-7 | 8-9), one input
    channel, 3 classes, whose real edges are ``edges``."""
    from models.tiny import TinyClassifier

    torch.manual_seed(0)
    m = TinyClassifier(in_channels=1, num_classes=3, image_size=8, edges=len(edges), levels=(2, 3, 3), outputs=2)
    layer = m.graph
    ei = layer.edge_index.t().tolist()
    weight = torch.full((layer.num_candidates,), 0.01)
    for u, v in edges:
        weight[ei.index([u, v])] = 1.0 if (u + v) % 2 else -1.0
    with torch.no_grad():
        layer.weight.copy_(weight)
    return m.eval()


HAND_TINY = [(0, 2), (1, 2), (1, 3), (2, 5), (2, 6), (4, 5), (4, 7), (5, 8), (6, 9), (7, 9), (0, 9)]


def test_hand_made_tiny_exact_counts():
    # node 3 is dead (no out-edge); 4 and 7 are live (they reach outputs) though no input reaches them.
    # stem: conv 9+1, BN 2, depthwise 9+1, 1x1 conv 2+2, BN 4 = 30; 7 live node ops of 11; the 10 real
    # edges into live nodes; head 2*3+3
    assert profile_model(hand_tiny(HAND_TINY), in_channels=1, image_size=8) == \
        {"macs": 576 + 576 + 2 * 64 + 7 * 9 * 64 + 10 * 64 + 6, "params": 30 + 77 + 10 + 9, "parts": [],
         "dead_nodes_removed": True}
    # without 1 -> 2, input 1 feeds only the dead node 3: its stem channel (1x1 row 1 + bias 1 + BN 2) goes too
    m = hand_tiny([e for e in HAND_TINY if e != (1, 2)])
    assert live_nodes(m.graph).tolist()[:4] == [True, False, True, False]
    assert profile_model(m, in_channels=1, image_size=8) == \
        {"macs": 576 + 576 + 1 * 64 + 6 * 9 * 64 + 9 * 64 + 6, "params": 26 + 66 + 9 + 9, "parts": [],
         "dead_nodes_removed": True}


PARAMS_SETUP = re.compile(r"parameters  ([0-9,]+) in all, ([0-9,]+) in the inference network of the initial wiring")
PARAMS_DONE = re.compile(r"parameters: +([0-9,]+) in the inference network of the learned wiring")
PARAMS_COMPACT = re.compile(r"parameters  [0-9,]+ in the training model \(all candidates\) -> ([0-9,]+) in the "
                            r"inference network")


def number(pattern: re.Pattern, text: str, group: int = 1) -> int:
    found = pattern.search(text)
    assert found, (pattern.pattern, text)
    return int(found.group(group).replace(",", ""))


@pytest.mark.parametrize("mode", ["fixed", "dnw"])
def test_train_profile_and_compact_print_one_parameter_count(mode, tmp_path, capsys):
    from wiring.compact.command import main as compact_main
    from wiring.train.pipeline import main as train_main

    run = tmp_path / "run"
    assert train_main(["--model", "micro", "--mode", mode, "--edges", "90", "--epochs", "1", "--train-subset",
                       "256", "--test-subset", "64", "--batch-size", "64", "--progress", "none",
                       "--out", str(run)]) == 0
    trained = capsys.readouterr().out
    assert main(["--run", str(run), "--json"]) == 0
    profiled = json.loads(capsys.readouterr().out)["params"]
    assert main(["--run", str(run)]) == 0
    text = capsys.readouterr().out
    assert f"parameters  {profiled:,}" in text and "not removed" not in text
    assert compact_main([str(run), "--repeats", "1", "--batch", "2"]) == 0
    compacted = capsys.readouterr().out
    learned = number(PARAMS_DONE, trained)
    assert learned == profiled == number(PARAMS_COMPACT, compacted)
    total, initial = number(PARAMS_SETUP, trained), number(PARAMS_SETUP, trained, 2)
    assert learned < total - 1712 + 90                  # dead nodes and their edges are not counted
    if mode == "fixed":                                 # the wiring never changed: the setup said the same
        assert initial == learned


def test_cli_json_parses(capsys):
    assert main(["--model", "mobilenetv1", "--width", "0.25", "--image-size", "224", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"macs", "params"}
    assert data["params"] == 470_072 and data["macs"] == pytest.approx(41e6, rel=0.03)


def test_cli_text_report(capsys):
    assert main(["--model", "mobilenetv1_dnw_small", "--width", "0.0625", "--node-width", "0.0625",
                 "--image-size", "8", "--classes", "10", "--edges", "999"]) == 0
    out = capsys.readouterr().out
    assert "MACs" in out and "stage 4" in out and "classifier graph" in out


@pytest.mark.parametrize("argv, needle", [
    (["--model", "resnet"], "unknown model"),
    (["--model", "mobilenetv1", "--width", "0"], "width"),
    (["--model", "mobilenetv1", "--width", "-1"], "width"),
    (["--model", "mobilenetv1_dnw", "--width", "0.01"], "width"),
    (["--model", "tiny", "--width", "0.5"], "no width multiplier"),
    (["--model", "mobilenetv1", "--node-width", "0.5"], "node-width"),
    (["--run", "/nonexistent/run"], "no run directory"),
])
def test_cli_user_mistakes_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and err.startswith("python -m wiring.profile: error: ")


def test_generic_counts_see_every_real_edge_whichever_kernels_run():
    # one more real edge is 64 more MACs (an 8x8 map, batch 1): the graph was counted,
    # also where the native kernels would run the whole graph as one fused node
    costs = [profile_model(create_model("micro", num_classes=10, image_size=8, edges=k), in_channels=3,
                           image_size=8)["macs"] for k in (100, 101)]
    assert costs[1] - costs[0] == 64
