"""The rewiring modes rigl and set in training: on a hand-made wired graph, on sparsified
layers, in the other settings, through the command (options, mistakes) and across a stop.

Every update is checked against what the papers define, recomputed here independently of
:func:`wiring.modes.drop_and_grow`: exactly k real edges after it, the n real edges of
smallest ``|w|`` (after the step's SGD update) dropped, the n others of largest ``|g|`` grown
(RigL; seeded at random for SET), grown weights 0 (RigL) with no momentum, nothing between
updates (and the candidates' gradient computed on update steps only), nothing after
``drop_until``; a run stopped by SIGTERM at an update step and resumed ends bit-identical to
an uninterrupted one.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from processes import run_main as run_command
from wiring.graph import static_graph
from wiring.io import WiringHistory, load_metrics, read_graphml
from wiring.layer import WiredGraph
from wiring.presets import authors_bound
from wiring.sparsify import sparse_layers, sparsify
from wiring.train.monitor import WiringMonitor
from wiring.train.pipeline import main
from wiring.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO = ["--model", "micro", "--data", "digits", "--edges", "100", "--batch-size", "64", "--progress", "none"]


def run_main(argv) -> int:
    return run_command(main, argv)


def expected_update(real: torch.Tensor, weight: torch.Tensor, score: torch.Tensor, n: int) -> tuple[set, set]:
    """(dropped, grown) by the definitions, with plain Python sorting: the n real of smallest
    |w| (ties: the higher index goes), then the n of largest score among the not-kept (ties:
    the lower index grows)."""
    real_ids = [i for i in range(real.numel()) if real[i]]
    by_size = sorted(real_ids, key=lambda i: (abs(float(weight[i])), -i))
    dropped = set(by_size[:n])
    kept = set(real_ids) - dropped
    others = [i for i in range(real.numel()) if i not in kept]
    grown = set(sorted(others, key=lambda i: (-abs(float(score[i])), i))[:n])
    return dropped - grown, grown - set(real_ids)


def train_layer(layer: WiredGraph, steps: int, seed: int = 0):
    """SGD steps on random data as the trainer takes them (backward, monitor, step, monitor);
    yields, per step, what the checks need."""
    model = nn.Sequential(layer)
    monitor = WiringMonitor(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    n_in = layer.graph.level_sizes[0]
    for t in range(1, steps + 1):
        x = torch.randn(n_in, 6, generator=gen)
        target = torch.randn(layer.graph.level_sizes[-1], 6, generator=gen)
        out = layer.run_static(x, lambda level, inp: torch.tanh(inp))[-1]
        loss = F.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        real = layer.frozen_mask.clone()
        grad = layer.weight.grad.clone()
        monitor.after_backward(t)
        masked_grad = layer.weight.grad.clone()
        opt.step()
        stepped = layer.weight.detach().clone()
        grown = monitor.after_step(t, opt)
        yield {"t": t, "real": real, "grad": grad, "masked_grad": masked_grad, "stepped": stepped,
               "grown": grown, "new": layer.frozen_mask.clone(), "weight": layer.weight.detach().clone(),
               "momentum": opt.state[layer.weight]["momentum_buffer"].clone()}


def test_rigl_on_a_wired_graph_every_update_by_the_definition():
    layer = WiredGraph(static_graph([3, 4, 4, 3]), edges=12, mode="rigl", seed=1, init="authors",
                       mode_options={"update_every": 3, "drop_fraction": 0.5, "drop_schedule": "cosine",
                                     "drop_until": 0.75, "total_steps": 20})
    assert layer.mode.updates_planned() == [3, 6, 9, 12, 15]
    updates = []
    for s in train_layer(layer, 20):
        non_real = ~s["real"]
        assert int(s["new"].sum()) == 12                                       # exactly k, always
        assert not bool((s["masked_grad"][non_real] != 0).any())               # the optimizer: real edges only
        if not layer.mode.update_due(s["t"]):
            assert not bool((s["grad"][non_real] != 0).any()), "a candidate gradient off an update step"
            assert torch.equal(s["new"], s["real"]) and s["grown"] == 0
            continue
        assert bool((s["grad"][non_real] != 0).any()), "an update step computes every candidate's gradient"
        n = layer.mode.drop_count(s["t"])
        dropped, grown = expected_update(s["real"], s["stepped"], s["grad"], n)
        assert set((s["real"] & ~s["new"]).nonzero().flatten().tolist()) == dropped
        assert set((s["new"] & ~s["real"]).nonzero().flatten().tolist()) == grown
        assert s["grown"] == len(grown)
        idx = sorted(grown)
        assert torch.equal(s["weight"][idx], torch.zeros(len(idx))), "RigL's grown weights start at 0"
        assert torch.equal(s["momentum"][idx], torch.zeros(len(idx))), "and with no momentum"
        kept = s["new"] & s["real"]
        assert torch.equal(s["weight"][kept], s["stepped"][kept])               # the others untouched
        updates.append((s["t"], n, len(dropped)))
    assert [u[:2] for u in updates] == [(3, 5), (6, 3), (9, 2), (12, 0), (15, 0)]   # floor(12 x 0.5 (1 + cos(pi t / 15)) / 2)
    assert sum(u[2] for u in updates) > 0


def test_set_on_a_wired_graph_grows_at_random_seeded_with_fresh_weights_and_never_a_dense_gradient():
    def run():
        layer = WiredGraph(static_graph([3, 4, 4, 3]), edges=12, mode="set", seed=1, init="authors",
                           mode_options={"update_every": 2, "drop_fraction": 0.5, "drop_schedule": "constant",
                                         "drop_until": 0.5, "total_steps": 12, "seed": 5})
        return layer, list(train_layer(layer, 12))
    layer, steps = run()
    bound = authors_bound(layer.graph)
    for s in steps:
        assert int(s["new"].sum()) == 12
        assert not bool((s["grad"][~s["real"]] != 0).any()), "SET never computes the candidates' gradient"
        if layer.mode.update_due(s["t"]):
            assert s["t"] in (2, 4, 6)
            dropped = s["real"] & ~s["new"]
            by_size = sorted(s["real"].nonzero().flatten().tolist(), key=lambda i: abs(float(s["stepped"][i])))
            assert set(dropped.nonzero().flatten().tolist()) <= set(by_size[:6])
            grown = s["new"] & ~s["real"]
            assert bool((s["weight"][grown] != 0).all()) and bool((s["weight"][grown].abs() <= bound).all())
            assert torch.equal(s["momentum"][grown], torch.zeros(int(grown.sum())))
        else:
            assert torch.equal(s["new"], s["real"])
    assert sum(s["grown"] for s in steps) > 0
    _, again = run()                                                       # seeded: the same draws
    assert all(torch.equal(a["new"], b["new"]) and torch.equal(a["weight"], b["weight"]) for a, b in zip(steps, again))


def test_rigl_on_sparsified_layers_per_layer_budget_by_the_definition():
    torch.manual_seed(0)
    net = sparsify(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), edges=14, mode="rigl",
                   mode_options={"update_every": 2, "drop_fraction": 0.5, "drop_schedule": "constant",
                                 "drop_until": 1.0, "total_steps": 6})
    layers = list(sparse_layers(net).values())
    budget = layers[0].budget
    monitor = WiringMonitor(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for t in range(1, 7):
        x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        real = [m.frozen_mask.clone() for m in layers]
        grads = [m.weight.grad.clone() for m in layers]
        due = t % 2 == 0
        for r, g in zip(real, grads):
            assert bool((g[~r] != 0).any()) is due, "dense gradient on update steps only"
        monitor.after_backward(t)
        assert all(not bool((m.weight.grad[~r] != 0).any()) for m, r in zip(layers, real))
        opt.step()
        stepped = [m.weight.detach().clone() for m in layers]
        monitor.after_step(t, opt)
        for m, r, g, w, k in zip(layers, real, grads, stepped, budget.layer_k):
            new = m.frozen_mask
            assert int(new.sum()) == k                                        # each layer keeps its k
            if not due:
                assert torch.equal(new, r)
                continue
            dropped, grown = expected_update(r.flatten(), w.flatten(), g.flatten(), int(k * 0.5))
            assert set((r & ~new).flatten().nonzero().flatten().tolist()) == dropped
            assert set((new & ~r).flatten().nonzero().flatten().tolist()) == grown
            assert torch.equal(m.weight.detach()[new & ~r], torch.zeros(len(grown)))


# ----------------------------------------------------------------------------- through the command

@pytest.mark.parametrize("mode", ["rigl", "set"])
@pytest.mark.parametrize("setting", ["static", "discrete"])
def test_the_command_rewires_k_edges_and_saves_the_wiring(tmp_path, capsys, mode, setting):
    """--debug checks the invariants (exactly k real edges, acyclic for static) after every step."""
    out = tmp_path / "run"
    assert run_main([*MICRO, "--mode", mode, "--setting", setting, "--steps", "2", "--epochs", "1",
                     "--update-every", "5", "--debug", "--snapshot-every", "5", "--out", out]) == 0
    text = capsys.readouterr().out
    assert "rewiring    every 5 steps up to step 17 of 23 (3 updates)" in text
    final = read_graphml(out / "wiring.graphml")
    assert final.edge_index.size(1) == 100 and final.attrs["mode"] == mode
    initial = read_graphml(out / "initial.graphml")
    assert {tuple(e) for e in initial.edge_index.t().tolist()} != {tuple(e) for e in final.edge_index.t().tolist()}
    assert load_metrics(out / "metrics.jsonl")[0]["swapped"] > 0
    history = WiringHistory.load(out / "history.pt")
    assert all(int(history.real_index(i).numel()) == 100 for i in range(len(history)))


@pytest.mark.parametrize("args, message", [
    (["--mode", "rigl", "--candidate-grad-every", "2"], "--candidate-grad-every"),
    (["--mode", "set", "--update-every", "0"], "--update-every"),
    (["--mode", "rigl", "--drop-fraction", "1.5"], "--drop-fraction"),
    (["--mode", "rigl", "--drop-until", "2"], "--drop-until"),
    (["--mode", "rigl", "--drop-schedule", "linear"], "--drop-schedule"),
])
def test_rewiring_option_mistakes_exit_2_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert run_main([*MICRO, "--out", out, *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and message in err
    assert not out.exists()


# ----------------------------------------------------------------------------- stop and resume

def assert_same_run(a: Path, b: Path) -> None:
    """Two finished runs agree bit for bit: metrics (but time), wiring, weights, frozen real sets,
    optimizer state, history."""
    skip = {"seconds", "img_s", "run_id"}
    assert [{k: v for k, v in m.items() if k not in skip} for m in load_metrics(a / "metrics.jsonl")] == \
        [{k: v for k, v in m.items() if k not in skip} for m in load_metrics(b / "metrics.jsonl")]
    wa, wb = read_graphml(a / "wiring.graphml"), read_graphml(b / "wiring.graphml")
    assert torch.equal(wa.edge_index, wb.edge_index) and torch.equal(wa.weight, wb.weight)
    sa, sb = (torch.load(p / "checkpoint.pt", weights_only=True) for p in (a, b))
    assert (sa["epoch"], sa["step"]) == (sb["epoch"], sb["step"]) and "position" not in sb
    assert sa["model"].keys() == sb["model"].keys() and any("frozen_mask" in key for key in sa["model"])
    for key, value in sa["model"].items():
        assert torch.equal(value, sb["model"][key]), key
    for key, value in sa["optimizer"]["state"].items():
        assert torch.equal(value["momentum_buffer"], sb["optimizer"]["state"][key]["momentum_buffer"]), key
    ha, hb = WiringHistory.load(a / "history.pt"), WiringHistory.load(b / "history.pt")
    assert ha.steps == hb.steps
    assert all(torch.equal(ha.real_index(i), hb.real_index(i)) for i in range(len(ha)))


def sigterm_after_step(monkeypatch, step: int) -> None:
    """A real SIGTERM to this process right after training step ``step``: the trainer's stop
    request catches it, finishes nothing more, saves the moment and exits 143."""
    real = Trainer._stop_requested
    sent = []

    def stop_requested(self):
        if self.step == step and not sent:
            sent.append(step)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self)
    monkeypatch.setattr(Trainer, "_stop_requested", stop_requested)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}

    def get(mode: str) -> Path:
        if mode not in runs:
            out = tmp_path_factory.mktemp(mode) / "whole"
            assert run_main([*RESUME_ARGS, "--mode", mode, "--out", out]) == 0
            runs[mode] = out
        return runs[mode]
    return get


RESUME_ARGS = [*MICRO, "--epochs", "2", "--update-every", "3", "--snapshot-every", "4"]   # 23 steps an epoch


@pytest.mark.parametrize("mode, step", [("rigl", 9), ("rigl", 8), ("set", 9), ("rigl", 23)],
                         ids=["rigl-after-update", "rigl-before-update", "set-after-update", "rigl-epoch-end"])
def test_a_sigterm_at_an_update_then_resume_gives_the_uninterrupted_run(tmp_path, monkeypatch, capsys,
                                                                       uninterrupted, mode, step):
    whole = uninterrupted(mode)
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        sigterm_after_step(patch, step)
        assert run_main([*RESUME_ARGS, "--mode", mode, "--out", out]) == 128 + signal.SIGTERM
    assert f"stopped by SIGTERM at step {step}" in capsys.readouterr().err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == step
    assert run_main(["--out", out, "--resume", "--progress", "none"]) == 0
    assert "resumed     " in capsys.readouterr().out
    assert_same_run(whole, out)
