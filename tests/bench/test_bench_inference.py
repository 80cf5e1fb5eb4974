"""wiring.bench.inference: the reference / engine / compact inference table (tiny sizes, one repeat)."""
from __future__ import annotations

import json

import pytest
import torch

from run_dirs import checkpoint_run
from wiring.bench.inference import NAMES, format_table, inference_table, main, time_alternating

pytestmark = pytest.mark.usefixtures("one_thread")

MICRO_CANDIDATES = 1712
KEYS = {"density", "edges", "candidates", "nodes", "kept_nodes", "dead_nodes", "constant_nodes", "kept_edges",
        "reference_img_s", "engine_img_s", "compact_img_s", "engine_vs_reference", "compact_vs_reference",
        "compact_vs_engine", "max_diff_engine", "max_diff_compact", "outputs_agree", "batch_size", "threads",
        "repeats", "image_size", "source"}


def test_time_alternating_reverses_the_order_every_other_round():
    calls = []
    models = {name: (lambda x, name=name: calls.append(name)) for name in "abc"}
    med = time_alternating(models, torch.zeros(1), repeats=3)
    assert set(med) == {"a", "b", "c"} and all(t >= 0 for t in med.values())
    assert "".join(calls) == "abc" + "abc" + "cba" + "abc"      # warm-up, then alternating rounds


def test_table_of_the_micro_classifier():
    threads = torch.get_num_threads()
    rows = inference_table((0.05, 0.2), batch=4, image_size=8, repeats=1, model="micro", threads=1)
    assert torch.get_num_threads() == threads
    assert [set(r) for r in rows] == [KEYS, KEYS]
    assert [r["edges"] for r in rows] == [round(0.05 * MICRO_CANDIDATES), round(0.2 * MICRO_CANDIDATES)]
    for r in rows:
        assert r["candidates"] == MICRO_CANDIDATES and r["nodes"] == 66
        assert r["kept_nodes"] + r["dead_nodes"] + r["constant_nodes"] == 66
        assert r["kept_edges"] <= r["edges"]
        assert r["outputs_agree"] is True                        # reference, engine and compact agree
        assert r["max_diff_engine"] < 1e-5 and r["max_diff_compact"] < 1e-5
        assert all(r[f"{name}_img_s"] > 0 for name in NAMES)
        ratio = r["compact_img_s"] / r["reference_img_s"]
        assert r["compact_vs_reference"] == pytest.approx(ratio, rel=0.01)
        assert r["engine_vs_reference"] == pytest.approx(r["engine_img_s"] / r["reference_img_s"], rel=0.01)
        assert (r["batch_size"], r["image_size"], r["threads"], r["repeats"], r["source"]) == (4, 8, 1, 1, "random_k")
    text = format_table(rows)
    assert text.count("random_k") == 2 and "compact/ref" in text


def test_a_trained_run_directory_adds_a_row(tmp_path):
    checkpoint_run(tmp_path, ["--model", "micro", "--edges", "150"])
    rows = inference_table((), batch=3, repeats=1, model="micro", runs=[tmp_path])
    assert len(rows) == 1 and set(rows[0]) == KEYS
    r = rows[0]
    assert (r["source"], r["image_size"], r["edges"]) == (str(tmp_path), 8, 150)
    assert r["outputs_agree"] is True


def test_cli_json_lines(capsys):
    assert main(["--model", "micro", "--image-size", "8", "--batch-size", "2", "--repeats", "1", "--threads", "1",
                 "--densities", "0.1", "0.3", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 2 and [r["edges"] for r in rows] == [171, 514]
    assert all(set(r) == KEYS and r["outputs_agree"] for r in rows)


def test_cli_user_mistakes_exit_2(tmp_path, capsys):
    assert main(["--densities", "0", "--model", "micro"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m wiring.bench_inference: error: ") and err.count("\n") == 1
    assert main(["--model", "micro", "--densities", "0.1", "--run", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
