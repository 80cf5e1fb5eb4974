"""Tests for viz.animate: frame counts, in-place updates, identical/different frames, MP4, errors."""
import doctest
import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageSequence

import viz.animate as animate
from viz.animate import EvolutionFigure, select_frames
from wiring.graph import static_graph
from wiring.io import WiringHistory, load_run, write_graphml

SMALL = ["--size", "3", "2", "--dpi", "40", "--quiet"]


def make_run(path: Path, snapshots, *, k: int = 8) -> WiringHistory:
    """A run over static_graph([2, 3, 3, 2]); ``snapshots``: (step, seed) pairs, the
    seed choosing the k real edges and their weights (equal seeds: equal wirings)."""
    path.mkdir(parents=True, exist_ok=True)
    g = static_graph([2, 3, 3, 2])
    h = WiringHistory(g.edge_index, g.level, g.role, {"static": True, "candidates": g.num_candidates})
    for step, seed in snapshots:
        gen = torch.Generator().manual_seed(seed)
        h.append(step, torch.randperm(g.num_candidates, generator=gen)[:k], torch.randn(k, generator=gen))
    h.save(path / "history.pt")
    steps = sorted({s for s, _ in snapshots if s > 0})
    with open(path / "metrics.jsonl", "w") as f:
        for epoch, step in enumerate(steps, 1):
            f.write(json.dumps({"epoch": epoch, "step": step, "loss": 1.0 / epoch, "test_acc": 0.1 * epoch,
                                "swapped": epoch}) + "\n")
    return h


def gif_frames(path: Path) -> tuple[int, list]:
    with Image.open(path) as im:
        durations = [frame.info.get("duration") for frame in ImageSequence.Iterator(im)]
        return im.n_frames, durations


def test_doctests():
    assert doctest.testmod(animate).failed == 0


def test_select_frames_keeps_first_and_last():
    assert select_frames(100, 7)[0] == 0 and select_frames(100, 7)[-1] == 99
    assert len(select_frames(100, 7)) == 7
    assert select_frames(4, None) == [0, 1, 2, 3]


def test_gif_frame_count(tmp_path):
    make_run(tmp_path / "run", [(5 * i, i) for i in range(6)])
    out = tmp_path / "e.gif"
    assert animate.main([str(tmp_path / "run"), "-o", str(out)] + SMALL) == 0
    assert gif_frames(out)[0] == 6
    assert animate.main([str(tmp_path / "run"), "-o", str(out), "--max-frames", "3"] + SMALL) == 0
    assert gif_frames(out)[0] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_frames_differ_where_wiring_changed_and_match_where_not(tmp_path):
    # A at step 0; then B three times at step 5: frames 2 and 3 show the same
    # wiring with the same caption (step 5, epoch 1, churn +0 / -0).
    h = make_run(tmp_path / "run", [(0, 1), (5, 2), (5, 2), (5, 2)])
    run = load_run(tmp_path / "run")
    fig = EvolutionFigure(run.history, run.metrics, size=(3, 2), dpi=40)
    artists = (len(fig.ax.collections), len(fig.ax.texts), len(fig.fig.axes))
    pictures, infos = [], []
    for position in range(len(h)):
        infos.append(fig.show(position))
        pictures.append(fig.rgba())
    assert (len(fig.ax.collections), len(fig.ax.texts), len(fig.fig.axes)) == artists  # updated in place
    changed = lambda a, b: int((a != b).any(axis=-1).sum())
    assert changed(pictures[0], pictures[1]) > 0
    assert changed(pictures[1], pictures[2]) > 0  # highlights of the change vanish
    assert changed(pictures[2], pictures[3]) == 0
    assert infos[1]["added"] > 0 and infos[1]["added"] == infos[1]["removed"]
    assert infos[2]["added"] == infos[2]["removed"] == 0 and infos[2]["test_acc"] == pytest.approx(0.1)
    assert infos[0]["added"] is None and infos[0]["test_acc"] is None  # no epoch at step 0
    # in the GIF Pillow merges the identical pair into one frame of double duration
    out = tmp_path / "e.gif"
    assert animate.main([str(tmp_path / "run"), "-o", str(out), "--fps", "4"] + SMALL) == 0
    count, durations = gif_frames(out)
    assert count == 3 and durations == [250, 250, 500]


def test_caption_reports_k_density_and_churn(tmp_path):
    make_run(tmp_path / "run", [(0, 1), (5, 2)])
    run = load_run(tmp_path / "run")
    fig = EvolutionFigure(run.history, run.metrics, title="demo", size=(3, 2), dpi=40)
    fig.show(1)
    text = fig.caption.get_text()
    for words in ("demo", "step 5  ·  epoch 1", "test acc 10.0% (after epoch 1)", "k = 8 edges", "density 21.6%",
                  "swaps since step 0: +", "added", "removed"):
        assert words in text, text


def test_titles_name_the_epoch_a_step_lies_in(tmp_path):
    # 12 steps per epoch (digits: 1,437 images, batch 128): metrics record steps 12, 24, 36, 48, 60;
    # step 50 lies inside epoch 5 (which ends at step 60), its last measured accuracy is epoch 4's
    path = tmp_path / "run"
    make_run(path, [(0, 1), (48, 2), (50, 3), (60, 4)])
    with open(path / "metrics.jsonl", "w") as f:
        for epoch in range(1, 6):
            f.write(json.dumps({"epoch": epoch, "step": 12 * epoch, "test_acc": 0.1 * epoch}) + "\n")
    run = load_run(path)
    fig = EvolutionFigure(run.history, run.metrics, size=(3, 2), dpi=40)
    texts = []
    for position in range(4):
        fig.show(position)
        texts.append(fig.caption.get_text().splitlines()[0])
    assert texts[0] == "step 0  ·  before training  ·  test acc n/a"
    assert texts[1] == "step 48  ·  epoch 4  ·  test acc 40.0% (after epoch 4)"
    assert texts[2] == "step 50  ·  epoch 5  ·  test acc 40.0% (after epoch 4)"
    assert texts[3] == "step 60  ·  epoch 5  ·  test acc 50.0% (after epoch 5)"


def test_default_size_is_1280_by_720_and_the_strip_counts_swaps_per_level_pair(tmp_path):
    from viz.layout import columns
    h = make_run(tmp_path / "run", [(0, 1), (5, 2)])
    run = load_run(tmp_path / "run")
    fig = EvolutionFigure(run.history, run.metrics)
    width, height = fig.fig.get_size_inches() * fig.fig.dpi
    assert (round(width), round(height)) == (1280, 720)
    assert fig.caption.get_fontsize() >= 11 and fig.strip.get_xticklabels()[0].get_fontsize() >= 7
    info = fig.show(1)
    before, now = set(h.real_index(0).tolist()), set(h.real_index(1).tolist())
    col = columns(h.level, h.role)
    cand = h.candidates
    expected = {}
    for sign, ids in ((0, now - before), (1, before - now)):
        for e in ids:
            key = (int(col[cand[0, e]]), int(col[cand[1, e]]))
            expected.setdefault(key, [0, 0])[sign] += 1
    names = {0: "in", 1: "1", 2: "2", 3: "out"}
    got = {}
    for name, a, r in zip(fig.pair_names, fig.bars_added, fig.bars_removed):
        if a.get_height() or r.get_height():
            got[name] = [int(a.get_height()), int(-r.get_height())]
    assert got == {f"{names[s]}→{names[t]}": v for (s, t), v in expected.items()}
    # the strip's ticks as drawn: the short level names of every picture (wiring.picture.level_name)
    assert [t.get_text() for t in fig.strip.get_xticklabels()] == fig.pair_names
    assert sum(v[0] for v in got.values()) == info["added"] > 0


def test_progress_on_stderr(tmp_path, capsys):
    make_run(tmp_path / "run", [(0, 1), (5, 2), (10, 3)])
    assert animate.main([str(tmp_path / "run"), "-o", str(tmp_path / "e.gif"), "--size", "3", "2",
                         "--dpi", "40"]) == 0
    err = capsys.readouterr().err
    assert "frame 3/3" in err and "wrote" in err


def test_mp4(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    make_run(tmp_path / "run", [(0, 1), (5, 2), (10, 3)])
    out = tmp_path / "e.mp4"
    assert animate.main([str(tmp_path / "run"), "-o", str(out), "--size", "3", "2", "--dpi", "50",
                         "--quiet"]) == 0
    assert out.stat().st_size > 0
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    frames = list(reader)
    assert meta["size"][0] > 0 and meta["size"][1] > 0 and len(frames) >= 1


def test_mp4_without_ffmpeg(tmp_path, capsys, monkeypatch):
    make_run(tmp_path / "run", [(0, 1), (5, 2)])
    monkeypatch.setattr(animate, "ffmpeg_binary", lambda: None)
    out = tmp_path / "e.mp4"
    with pytest.raises(SystemExit) as exc:
        animate.main([str(tmp_path / "run"), "-o", str(out)] + SMALL)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install imageio-ffmpeg" in err[0] and ".gif" in err[0]
    assert not out.exists()


def test_missing_history(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    g = static_graph([2, 2])
    from wiring.graph import Wiring
    write_graphml(Wiring(g.edge_index, torch.ones(4), g.level, g.role), run / "wiring.graphml")
    out = tmp_path / "e.gif"
    with pytest.raises(SystemExit) as exc:
        animate.main([str(run), "-o", str(out)] + SMALL)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "history.pt" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["-o", "e.avi"], "'.avi'"), (["--fps", "0"], "--fps"), (["--max-frames", "-1"], "--max-frames")])
def test_bad_flags(tmp_path, capsys, monkeypatch, args, words):
    make_run(tmp_path / "run", [(0, 1)])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        animate.main([str(tmp_path / "run")] + args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_missing_run_dir_and_empty_history(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        animate.main([str(tmp_path / "nope"), "-o", str(tmp_path / "e.gif")] + SMALL)
    assert exc.value.code == 2
    make_run(tmp_path / "run", [])
    with pytest.raises(SystemExit) as exc:
        animate.main([str(tmp_path / "run"), "-o", str(tmp_path / "e.gif")] + SMALL)
    assert exc.value.code == 2
    assert "no history.pt snapshots" in capsys.readouterr().err
    assert not (tmp_path / "e.gif").exists()


def test_runs_with_several_wirings_animate_the_one_named(tmp_path, capsys):
    from run_dirs import make_multi_wiring_run
    run = make_multi_wiring_run(tmp_path / "run", {"stages-0-graph": 5, "stages-1-graph": 9})
    out = tmp_path / "e.gif"
    with pytest.raises(SystemExit) as exc:
        animate.main([str(run), "-o", str(out)] + SMALL)
    assert exc.value.code == 2 and "--wiring NAME" in capsys.readouterr().err and not out.exists()
    assert animate.main([str(run), "-o", str(out), "--wiring", "stages-0-graph"] + SMALL) == 0
    assert Image.open(out).n_frames == 3


def test_the_strip_of_a_recurrent_wiring_counts_swaps_per_role_pair(tmp_path):
    """A dynamic wiring has one level: its strip names role pairs as every picture
    names the roles (in / hidden / out), never '0→0' as before."""
    from wiring.graph import dynamic_graph
    g = dynamic_graph(12, inputs=3, outputs=2)
    h = WiringHistory(g.edge_index, g.level, g.role, {"static": False, "candidates": g.num_candidates})
    for step, seed in ((0, 1), (5, 2)):
        gen = torch.Generator().manual_seed(seed)
        h.append(step, torch.randperm(g.num_candidates, generator=gen)[:40], torch.randn(40, generator=gen))
    fig = EvolutionFigure(h, size=(4, 3), dpi=40)
    ticks = [t.get_text() for t in fig.strip.get_xticklabels()]
    assert ticks == fig.pair_names and "hidden→hidden" in ticks and "in→out" in ticks
    assert set(ticks) <= {f"{a}→{b}" for a in ("in", "hidden", "out") for b in ("in", "hidden", "out")}
