"""wiring.bench: the dense reference is the same network, and the CLI reports ratios."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from wiring.backends import kernels
from wiring.bench import backends as bench_backends
from wiring.bench.contest import candidates_for, levels_for, make_models, without_native
from wiring.bench.training import main


def test_dense_reference_equals_the_engine_in_outputs_and_edge_gradients():
    engine, reference = make_models(edges=3000, image_size=8, seed=0)
    engine, reference = engine.double(), reference.double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    a, b = engine(x), reference(x)
    assert torch.allclose(a, b, atol=1e-10)
    F.cross_entropy(a, y).backward()
    F.cross_entropy(b, y).backward()
    ei = engine.graph.edge_index
    dense_grad = reference.weight.grad[ei[1], ei[0]]            # the reference's gradient at every candidate
    assert torch.allclose(engine.graph.weight.grad, dense_grad, atol=1e-10)
    assert torch.count_nonzero(dense_grad[~engine.graph.real_mask()]) > 0   # hallucinated edges too


def test_reference_top_k_is_a_full_sort_of_the_same_k_edges():
    engine, reference = make_models(edges=500, image_size=8, seed=1)
    ei = engine.graph.edge_index
    mask = reference.mask()
    assert int(mask.sum()) == 500
    assert torch.equal(mask[ei[1], ei[0]], engine.graph.real_mask())


def test_cli_json(capsys):
    assert main(["--edges", "800", "--batch-size", "4", "--image-size", "8", "--repeats", "2", "--warmup", "0",
                 "--no-memory", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["outputs_agree"] is True and r["edges"] == 800
    assert r["engine_img_s"] > 0 and r["reference_img_s"] > 0
    # the ratio comes from unrounded medians, the step times are rounded to 0.1 ms
    assert r["ratio"] == pytest.approx(r["reference_step_ms"] / r["engine_step_ms"], rel=0.05)
    # with the native kernels on, the engine on PyTorch ops alone runs alongside
    assert r["native"] == (kernels.library() is not None)
    assert ("pytorch_img_s" in r) == r["native"]


def test_without_native_runs_the_step_on_pytorch_ops():
    seen = []
    step = without_native(lambda: seen.append(kernels.enabled(torch.zeros(1))) or 0.0)
    step()
    assert seen == [False]
    assert kernels.enabled(torch.zeros(1)) == (kernels.library() is not None)


def test_cli_rejects_bad_budget(capsys):
    assert main(["--edges", "0"]) == 2
    assert "--edges" in capsys.readouterr().err


def test_levels_scale_the_paper_shape_to_any_node_count():

    assert levels_for(900) == (32, 192, 192, 192, 192)
    assert sum(levels_for(2001)) + 100 == 2001
    engine, _ = make_models(edges=100, image_size=8, seed=0, nodes=301)
    assert engine.graph.graph.num_nodes == 301
    assert engine.graph.num_candidates == candidates_for(301)


def test_table_writes_between_markers_and_keeps_the_rest(tmp_path, capsys):
    doc = tmp_path / "performance.md"
    doc.write_text("# Speed\n\nhand-written intro\n")
    argv = ["--table", str(doc), "--table-nodes", "140", "200", "--table-edges", "50", "5000",
            "--batch-size", "2", "--image-size", "8", "--repeats", "1", "--warmup", "0", "--no-memory"]
    assert main(argv) == 0
    text = doc.read_text()
    assert text.startswith("# Speed\n\nhand-written intro\n")
    rows = [line for line in text.splitlines() if line.startswith("| 1") or line.startswith("| 2")]
    # 140 nodes have 4,280 candidates: 5,000 edges do not fit there, so 3 rows
    assert [r.split("|")[1].strip() for r in rows] == ["140", "200", "200"]
    doc.write_text(text + "\nafter the table\n")
    assert main(argv) == 0
    again = doc.read_text()
    assert again.count("<!-- scaling table") == 1 and again.endswith("after the table\n")


def test_table_rejects_a_grid_that_does_not_fit(tmp_path, capsys):
    assert main(["--table", str(tmp_path / "p.md"), "--table-nodes", "140", "--table-edges", "10000"]) == 2
    assert "exceeds the candidates" in capsys.readouterr().err
    assert not (tmp_path / "p.md").exists()


def test_inference_flag_hands_over_to_the_inference_benchmark(capsys):
    assert main(["--inference", "--model", "micro", "--densities", "0.05", "--batch-size", "2",
                 "--image-size", "8", "--repeats", "1", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["outputs_agree"] is True and row["compact_img_s"] > 0


def test_backend_all_puts_every_installed_backend_side_by_side(tmp_path, capsys):
    from wiring import backends
    table = tmp_path / "perf.md"
    table.write_text("# Perf\n\nkept\n")
    assert main(["--backend", "all", "--backend-nodes", "136", "--densities", "0.05", "0.5", "--batch-size", "2",
                 "--image-size", "8", "--repeats", "2", "--warmup", "1", "--json", "--table", str(table)]) == 0
    rows = json.loads(capsys.readouterr().out.splitlines()[0])
    assert [(r["nodes"], r["density"]) for r in rows] == [(136, pytest.approx(0.05, abs=1e-3)),
                                                          (136, pytest.approx(0.5, abs=1e-3))]
    for r in rows:
        assert set(r["img_s"]) == set(backends.installed()) and r["winner"] in r["img_s"]
        assert r["losses_agree"] is True                          # the same weights on every backend
    assert rows[0]["dense_levels"] < rows[1]["dense_levels"] == rows[1]["levels"]
    text = table.read_text()
    assert text.startswith("# Perf\n\nkept\n") and bench_backends.BACKENDS_BEGIN in text and bench_backends.BACKENDS_END in text
    assert "| 136 |" in text and "`torch` img/s" in text


def test_backend_and_device_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--backend", "fastest"])
    assert exit_.value.code == 2 and "--backend" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    with kernels.disabled():
        assert main(["--backend", "native", "--edges", "800"]) == 2
        assert "backend 'native' not available" in capsys.readouterr().err


def test_mode_races_the_wiring_modes_side_by_side_with_ratios(capsys):
    assert main(["--mode", "dnw", "fixed", "rigl", "set", "--nodes", "136", "--edges", "300", "--batch-size", "2",
                 "--image-size", "8", "--repeats", "1", "--warmup", "1", "--update-every", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r["step_ms"]) == {"dnw", "fixed", "rigl", "set"} and all(v > 0 for v in r["step_ms"].values())
    assert r["ratio_to_dnw"]["dnw"] == 1.0 and r["ratio_to_fixed"]["fixed"] == 1.0 and r["update_every"] == 2


def test_mode_engines_start_from_the_same_weights_and_rewire_in_their_cycles():
    from argparse import Namespace

    from wiring.bench.contest import batch
    from wiring.bench.modes import mode_engine, training_cycle
    args = Namespace(edges=300, image_size=8, seed=0, nodes=136, update_every=2, batch_size=2)
    models = {m: mode_engine(m, args) for m in ("dnw", "fixed", "rigl", "set")}
    weights = {m: model.graph.weight.detach().clone() for m, model in models.items()}
    assert all(torch.equal(w, weights["dnw"]) for w in weights.values())
    assert all(torch.equal(models[m].graph.real_mask(), models["dnw"].graph.real_mask()) for m in models)
    x, y = batch(args, torch.device("cpu"))
    for m in ("rigl", "set"):
        before = models[m].graph.real_mask()
        training_cycle(models[m], x, y, 2)()                  # one cycle: one rewiring
        after = models[m].graph.real_mask()
        assert int(after.sum()) == 300 and not torch.equal(before, after)


def test_mode_rejects_an_unknown_mode_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--mode", "magic"])
    assert exit_.value.code == 2 and "--mode" in capsys.readouterr().err


def test_race_progress_in_a_log_is_one_line_per_round(capsys) -> None:
    """Without a terminal (a log, CI), each round's progress is its own line, not a run-on ``\\r`` line."""
    from wiring.bench.contest import race
    calls = []
    medians = race({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, progress=True)
    assert calls == ["a", "b", "b", "a", "a", "b"]          # every other round in reverse order
    assert set(medians) == {"a", "b"}
    assert capsys.readouterr().err == "repeat 1/3\nrepeat 2/3\nrepeat 3/3\n"
