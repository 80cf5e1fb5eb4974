"""Tests for viz.explore: the diff encoding, a self-contained page, the CLI's errors,
and the page itself in headless Chromium (skipped when chromium, chromedriver or
selenium are absent).

The browser tests need ``chromium`` and ``chromedriver`` (Debian: ``apt-get install
chromium chromium-driver``; other paths through $CHROMIUM / $CHROMEDRIVER) and
``pip install selenium``. With $EXPLORER_SCREENSHOT_RUN (a run directory) and
$EXPLORER_SCREENSHOT (a .png path) set, :func:`test_screenshot` also writes a
screenshot of that run's page (``docs/figures.sh`` makes ``docs/explorer.png`` with Chromium's
``--screenshot`` and ``page.html#frame=N``).
"""
import base64
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from viz import explore
from viz.explore import build_payload, decode_frames, explorer_html, load_frames, payload, read_payload
from viz.layout import node_positions
from wiring.graph import Wiring, dynamic_graph, static_graph
from wiring.io import WiringHistory, write_graphml

# ----------------------------------------------------------------------------- fixtures

def make_run(path: Path, *, dynamic: bool = False, frames: int = 4, k: int = 10, seed: int = 0) -> WiringHistory:
    """A hand-built run directory: static_graph([2, 3, 3, 2]) (37 candidates) or a
    6-node dynamic graph with self-loops (36 candidates); ``frames`` snapshots that
    swap a few real edges each and drift their weights; one metrics line per epoch."""
    path.mkdir(parents=True, exist_ok=True)
    g = dynamic_graph(6, inputs=2, outputs=1, self_loops=True) if dynamic else static_graph([2, 3, 3, 2])
    h = WiringHistory(g.edge_index, g.level, g.role, {"static": not dynamic, "candidates": g.num_candidates,
                                                      "mode": "dnw", "preset": "random_k", "k": k})
    gen = torch.Generator().manual_seed(seed)
    real = torch.randperm(g.num_candidates, generator=gen)[:k]
    weight = torch.randn(g.num_candidates, generator=gen)
    for i in range(frames):
        if i:  # swap 1-3 real edges for candidates that are not real, drift the weights
            out = torch.tensor([c for c in range(g.num_candidates) if c not in set(real.tolist())])
            n = 1 + i % 3
            real = torch.cat([real[n:], out[torch.randperm(out.numel(), generator=gen)[:n]]])
            weight = weight + 0.05 * torch.randn(g.num_candidates, generator=gen)
        h.append(10 * i, real, weight)
    h.save(path / "history.pt")
    with open(path / "metrics.jsonl", "w") as f:
        for epoch in range(1, frames):
            f.write(json.dumps({"epoch": epoch, "step": 10 * epoch, "loss": 1.0 / epoch,
                                "test_acc": 0.2 * epoch + 0.01, "swapped": epoch}) + "\n")
    (path / "config.yaml").write_text("model: tiny\nmode: dnw\n")
    return h


@pytest.fixture
def run_dir(tmp_path):
    make_run(tmp_path / "run")
    return tmp_path / "run"


def page_of(source) -> str:
    return explorer_html(load_frames(source))


def leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ----------------------------------------------------------------------------- encoding

def check_roundtrip(history: WiringHistory, payload: dict) -> None:
    decoded = decode_frames(payload)
    assert len(decoded) == len(history)
    step = payload["weights"]["scale"] / payload["weights"]["levels"]
    for i, (cand, ends, weight) in enumerate(decoded):
        index = history.real_index(i)
        assert np.array_equal(cand, index.numpy())                        # the real edges, exactly
        assert np.array_equal(ends, history.candidates[:, index].numpy())  # their source and target
        frame = history.frame(i)  # sorted by candidate id, as decoded
        assert np.abs(weight - frame.weight.double().numpy()).max(initial=0) <= step / 2 + 1e-12
    assert payload["frames"]["steps"] == history.steps
    assert payload["frames"]["k"] == [int(history.real_index(i).numel()) for i in range(len(history))]


def test_doctests_and_varints():
    import doctest
    assert doctest.testmod(explore).failed == 0
    values = np.array([0, 1, 127, 128, 300, 16383, 16384, 2**31 - 1, 2**35 + 5], dtype=np.int64)
    got, end = payload._read_varints(np.frombuffer(payload._varints(values), np.uint8), 0, values.size)
    assert np.array_equal(got, values) and end == len(payload._varints(values))


def test_diff_encoding_reproduces_every_frame(run_dir):
    from wiring.io import load_run
    history = load_run(run_dir).history
    payload = read_payload(page_of(run_dir))   # what the page ships
    check_roundtrip(history, payload)
    # frame 0 ships every edge as added; later frames only the differences
    assert payload["frames"]["offsets"][0] == 0 and len(payload["frames"]["offsets"]) == len(history) + 1


def test_diff_encoding_large_random_history(tmp_path):
    """Many frames, big candidate ids, self-loops, empty frames and frames equal to the previous."""
    g = dynamic_graph(300, inputs=5, outputs=5, self_loops=True)   # 90,000 candidates
    h = WiringHistory(g.edge_index, g.level, g.role, {"static": False})
    gen = torch.Generator().manual_seed(1)
    real = torch.randperm(g.num_candidates, generator=gen)[:500]
    for i in range(60):
        if i % 7 == 3:
            h.append(i, torch.zeros(0, dtype=torch.long), torch.zeros(0))
            continue
        if i % 5 != 4:  # every fifth frame repeats the previous real set
            keep = real[torch.randperm(real.numel(), generator=gen)[:450]]
            real = torch.unique(torch.cat([keep, torch.randint(0, g.num_candidates, (50,), generator=gen)]))
        h.append(i, real, 3 * torch.randn(real.numel(), generator=gen))
    h.save(tmp_path / "history.pt")
    payload = read_payload(page_of(tmp_path))
    check_roundtrip(h, payload)
    assert payload["nodes"]["dynamic"] is True


def test_quantised_weights_change_only_when_needed(run_dir):
    from wiring.io import load_run
    history = load_run(run_dir).history
    payload = build_payload(load_frames(run_dir))
    blob = base64.b64decode(payload["frames"]["blob"])
    assert len(blob) == payload["frames"]["offsets"][-1]
    # an unchanged history: frames after the first ship nothing but three zero counts
    h = WiringHistory(history.candidates, history.level, history.role, dict(history.attrs))
    for i in range(5):
        h.append(i, history.real_index(0), history.frame(0).weight)
    h.save(run_dir / "history.pt")
    offsets = build_payload(load_frames(run_dir))["frames"]["offsets"]
    assert np.diff(offsets)[1:].tolist() == [3] * 4


# ----------------------------------------------------------------------------- the page

def test_page_is_self_contained(run_dir):
    page = page_of(run_dir)
    assert "http://" not in page and "https://" not in page and "//cdn" not in page.lower()
    scripts = re.findall(r"<script\b([^>]*)>", page)
    assert len(scripts) >= 2 and not any("src" in attrs for attrs in scripts)
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page)
    assert not re.search(r"\b(src|href)\s*=", page)
    assert not re.search(r"url\(|@import|fetch\(|XMLHttpRequest|import\(", page)
    assert "<canvas" in page


def test_layouts_match_viz_layout(tmp_path, run_dir):
    payload = read_payload(page_of(run_dir))
    g = static_graph([2, 3, 3, 2])
    pos = node_positions(g.level, g.role)
    assert payload["nodes"]["dynamic"] is False
    assert np.allclose(np.stack([payload["nodes"]["x"], payload["nodes"]["y"]], 1), pos, atol=1e-6)
    make_run(tmp_path / "dyn", dynamic=True)
    dyn = read_payload(page_of(tmp_path / "dyn"))
    g = dynamic_graph(6, inputs=2, outputs=1, self_loops=True)
    assert dyn["nodes"]["dynamic"] is True
    assert np.allclose(np.stack([dyn["nodes"]["x"], dyn["nodes"]["y"]], 1),
                       node_positions(g.level, g.role, dynamic=True), atol=1e-6)


def test_the_payload_names_levels_as_every_picture(tmp_path, run_dir):
    """The page names columns only by the names the payload carries, those of
    wiring.picture.level_name: long in the column labels and hover, short in the table."""
    from viz.layout import columns
    nodes = read_payload(page_of(run_dir))["nodes"]
    g = static_graph([2, 3, 3, 2])
    assert nodes["column_names"] == [[0, "inputs", "in"], [1, "level 1", "1"], [2, "level 2", "2"],
                                     [3, "outputs", "out"]]
    assert [label for _, label in nodes["columns"]] == ["inputs (2)", "level 1 (3)", "level 2 (3)", "outputs (2)"]
    assert nodes["column"] == columns(g.level, g.role).tolist()
    make_run(tmp_path / "dyn", dynamic=True)
    dyn = read_payload(page_of(tmp_path / "dyn"))["nodes"]
    assert dyn["column_names"] == dyn["column"] == []    # one level: nodes by role, the role groups labelled
    assert dyn["columns"] == [[0.0, "inputs (2)"], [1.0, "hidden (3)"], [2.0, "outputs (1)"]]


def test_graphml_is_one_frame(tmp_path, run_dir):
    from wiring.io import load_run
    last = load_run(run_dir).history.frame(-1)
    write_graphml(Wiring(last.edge_index, last.weight, last.level, last.role, None,
                         {**last.attrs, "test_acc": 0.5}), tmp_path / "w.graphml")
    payload = read_payload(page_of(tmp_path / "w.graphml"))
    assert payload["frames"]["count"] == 1 and payload["frames"]["steps"] == [30]
    assert payload["metrics"] == [{"step": 30, "epoch": None, "test_acc": 0.5}]
    (cand, ends, weight), = decode_frames(payload)
    assert np.array_equal(ends, last.edge_index.numpy()[:, np.argsort(cand)])
    # a cyclic GraphML without levels gets the circular layout
    nx.write_graphml(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]), tmp_path / "cyc.graphml")
    assert read_payload(page_of(tmp_path / "cyc.graphml"))["nodes"]["dynamic"] is True


def test_cli_writes_atomically(tmp_path, run_dir, capsys):
    out = tmp_path / "out" / "w.html"
    out.parent.mkdir()
    assert explore.main([str(run_dir), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "wrote" in capsys.readouterr().err and leftovers(out.parent) == []


@pytest.mark.parametrize("case", ["missing", "not-a-run", "bad-graphml", "no-folder", "bad-ext", "no-history",
                                  "bad-history"])
def test_cli_errors_exit_2_with_one_line(tmp_path, run_dir, capsys, case):
    out = tmp_path / "w.html"
    source = run_dir
    if case == "missing":
        source = tmp_path / "nope"
    elif case == "not-a-run":
        source = tmp_path / "empty"
        source.mkdir()
    elif case == "bad-graphml":
        source = tmp_path / "bad.graphml"
        source.write_text("<graphml><graph><node id='a'>")
    elif case == "no-folder":
        out = tmp_path / "nowhere" / "w.html"
    elif case == "bad-ext":
        out = tmp_path / "w.png"
    elif case == "no-history":
        (run_dir / "history.pt").unlink()
    elif case == "bad-history":
        (run_dir / "history.pt").write_bytes(b"not a torch file")
    with pytest.raises(SystemExit) as exc:
        explore.main([str(source), "-o", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m viz.explore: error: ")
    assert "Traceback" not in err
    assert not out.exists() and leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- headless Chromium

def _find(env: str, names) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if os.path.exists(os.environ[env]) else None
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    chromium = _find("CHROMIUM", ["chromium", "chromium-browser", "google-chrome"])
    driver_path = _find("CHROMEDRIVER", ["chromedriver"])
    if chromium is None:
        pytest.skip("no chromium binary (apt-get install chromium, or set $CHROMIUM)")
    if driver_path is None:
        pytest.skip("no chromedriver binary (apt-get install chromium-driver, or set $CHROMEDRIVER)")
    profile = tempfile.mkdtemp(prefix="explore-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1500,860", "--hide-scrollbars", "--force-device-scale-factor=1"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    old = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"  # selenium manager: never download anything
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    finally:
        if old is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = old
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, script: str, timeout: float = 15.0):
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for: {script}")
        time.sleep(0.03)


def open_page(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())
    wait_for(driver, "return window.explorer !== undefined && window.explorer.drawn > 0")
    driver.get_log("browser")  # start the log afresh for this page


def snapshot(driver) -> tuple[int, str, str]:
    """(frame, canvas pixels as a data URL, side panel text)."""
    return tuple(driver.execute_script(
        "return [explorer.frame, document.getElementById('edges').toDataURL(),"
        " document.getElementById('stats').innerText + document.getElementById('levels').innerText]"))


def assert_no_errors(driver) -> None:
    assert driver.execute_script("return window.__explorerErrors") == []
    severe = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    assert severe == []


def hover(driver, x: float, y: float) -> str:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    canvas = driver.find_element(By.ID, "overlay")
    size = canvas.size
    ActionChains(driver).move_to_element_with_offset(canvas, int(round(x - size["width"] / 2)),
                                                     int(round(y - size["height"] / 2))).perform()
    return driver.execute_script("return document.getElementById('hover-info').innerText")


def test_browser_slider_redraws_frame_and_panel(browser, tmp_path, run_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    out = tmp_path / "page.html"
    assert explore.main([str(run_dir), "-o", str(out)]) == 0
    payload = read_payload(out.read_text(encoding="utf-8"))
    decoded = decode_frames(payload)
    open_page(browser, out)
    # it opens at the last frame (the learned wiring), labelled as the panel counts it
    assert browser.execute_script("return explorer.frames") == 4
    assert browser.execute_script("return [explorer.frame, document.getElementById('frame-label').textContent]") \
        == [3, "frame 4/4 · step 30"]
    # the level table's headers: the short names of every picture's ticks (wiring.picture.level_name)
    from viz.layout import columns
    from wiring.io import load_run
    hist = load_run(run_dir).history
    col, ends = columns(hist.level, hist.role), hist.candidates.numpy()
    used = sorted(set(col[ends[0, decoded[3][0]]]) | set(col[ends[1, decoded[3][0]]]))
    heads = browser.execute_script(
        "return Array.from(document.querySelectorAll('#levels tr:first-child th'), (t) => t.textContent)")
    assert heads == ["from\\to"] + [["in", "1", "2", "out"][c] for c in used]

    # move the slider with the keyboard, as a user would
    slider = browser.find_element(By.ID, "slider")
    slider.click()
    slider.send_keys(Keys.HOME)
    wait_for(browser, "return explorer.frame === 0 && document.body.dataset.frame === '0'")
    frame0, pixels0, panel0 = snapshot(browser)
    assert frame0 == 0 and "step" in panel0 and "first frame" in panel0
    drawn = browser.execute_script("return explorer.drawn")
    slider.send_keys(Keys.ARROW_RIGHT)
    # the frame index moves first; the canvas may take a moment longer to show the new wiring
    browser.execute_script("window.__pixels0 = arguments[0]", pixels0)
    wait_for(browser, f"return explorer.frame === 1 && explorer.drawn > {drawn} && "
                      "document.getElementById('edges').toDataURL() !== window.__pixels0")
    frame1, pixels1, panel1 = snapshot(browser)
    assert frame1 == 1 and pixels1 != pixels0 and panel1 != panel0
    assert "added" in panel1 and "removed" in panel1 and "step\t10" in panel1

    # the page's own decoder agrees with the Python one on every frame, forwards and backwards
    for i in [1, 2, 3, 0, 3, 2]:
        browser.execute_script(f"explorer.goTo({i})")
        wait_for(browser, f"return explorer.frame === {i} && document.body.dataset.frame === '{i}'")
        cand, _, weight = decoded[i]
        assert browser.execute_script("return explorer.realCandidates()") == cand.tolist()
        assert np.allclose(browser.execute_script("return explorer.weights()"), weight, atol=1e-9)
        acc = browser.execute_script("return document.getElementById('stats').innerText")
        assert ("n/a" in acc) if i == 0 else (f"{100 * (0.2 * i + 0.01):.1f}%" in acc)

    # play / pause
    browser.execute_script("explorer.goTo(0)")
    wait_for(browser, "return explorer.frame === 0")
    browser.find_element(By.ID, "play").click()
    wait_for(browser, "return explorer.frame > 0")
    browser.find_element(By.ID, "play").click()
    assert browser.execute_script("return explorer.playing") is False

    # hover: a node, then a real edge (its midpoint), with id, level, weight and since when
    browser.execute_script("explorer.goTo(2)")
    wait_for(browser, "return explorer.frame === 2 && document.body.dataset.frame === '2'")
    x, y = browser.execute_script("return explorer.nodeScreen(4)")
    text = hover(browser, x, y)
    assert text.startswith("node 4") and "level 1" in text
    added = browser.execute_script("return explorer.changes().added")
    assert added
    for cand in added + decoded[2][0].tolist():
        x, y = browser.execute_script(f"return explorer.edgeScreen({cand})")
        text = hover(browser, x, y)
        if browser.execute_script("return explorer.hovered()") == {"kind": "edge", "id": cand}:
            break
    else:
        raise AssertionError("no edge could be hovered at its midpoint")
    assert text.startswith(f"edge {cand}:") and "weight" in text
    names = ["inputs", "level 1", "level 2", "outputs"]   # as every picture's labels name them
    assert f"{names[col[ends[0, cand]]]} → {names[col[ends[1, cand]]]}" in text.splitlines()[1]
    assert ("appeared at step 20" in text) if cand in added else ("since step" in text or "appeared" in text)
    assert_no_errors(browser)


def test_browser_dynamic_and_single_frame(browser, tmp_path):
    make_run(tmp_path / "dyn", dynamic=True, frames=3)
    out = tmp_path / "dyn.html"
    out.write_text(page_of(tmp_path / "dyn"), encoding="utf-8")
    open_page(browser, out)
    frame2, pixels2, panel2 = snapshot(browser)   # it opens at the last frame
    browser.execute_script("explorer.goTo(0)")
    wait_for(browser, "return explorer.frame === 0 && document.body.dataset.frame === '0'")
    _, pixels0, panel0 = snapshot(browser)
    assert frame2 == 2 and pixels2 != pixels0 and panel2 != panel0 and "edges per role" in browser.page_source
    assert_no_errors(browser)

    h = make_run(tmp_path / "static")
    last = h.frame(-1)
    write_graphml(last, tmp_path / "w.graphml")
    out = tmp_path / "one.html"
    out.write_text(page_of(tmp_path / "w.graphml"), encoding="utf-8")
    open_page(browser, out)
    assert browser.execute_script("return document.getElementById('slider').disabled") is True
    assert browser.execute_script("return explorer.frames") == 1
    assert "single frame" in snapshot(browser)[2]
    assert_no_errors(browser)


def test_browser_recurrent_wiring_has_arrowheads_on_its_strongest_edges(browser, tmp_path):
    """A dynamic wiring of 2,500 edges (ranked style): arrowheads on the 250 strongest
    (viz.render does the same); the old page drew none above 400 edges."""
    path = tmp_path / "dyn"
    g = dynamic_graph(60, inputs=6, outputs=6)
    h = WiringHistory(g.edge_index, g.level, g.role, {"static": False, "candidates": g.num_candidates})
    gen = torch.Generator().manual_seed(0)
    for step in (0, 10):
        h.append(step, torch.randperm(g.num_candidates, generator=gen)[:2500], torch.randn(2500, generator=gen))
    path.mkdir()
    h.save(path / "history.pt")
    out = tmp_path / "dyn.html"
    out.write_text(page_of(path), encoding="utf-8")
    open_page(browser, out)
    assert browser.execute_script("return [explorer.frame, explorer.ranked]") == [1, True]
    arrowed = set(browser.execute_script("return explorer.arrowed()"))
    cand, weight = browser.execute_script("return [explorer.realCandidates(), explorer.weights()]")
    strength = dict(zip(cand, np.abs(weight)))
    assert len(arrowed) == 250 and arrowed <= set(cand)
    assert min(strength[c] for c in arrowed) >= max(strength[c] for c in set(cand) - arrowed)
    assert "direction (the 250 strongest)" in browser.execute_script("return document.getElementById('legend').innerText")
    assert_no_errors(browser)


def test_browser_epoch_of_a_step_and_ranked_style(browser, tmp_path):
    # 12 steps per epoch: step 50 lies in epoch 5 (ends at step 60); its accuracy is epoch 4's.
    path = tmp_path / "run"
    g = static_graph([32, 96, 96, 10])
    h = WiringHistory(g.edge_index, g.level, g.role, {"static": True, "candidates": g.num_candidates})
    gen = torch.Generator().manual_seed(0)
    for step in (0, 48, 50, 60):
        h.append(step, torch.randperm(g.num_candidates, generator=gen)[:2500], torch.randn(2500, generator=gen))
    path.mkdir()
    h.save(path / "history.pt")
    with open(path / "metrics.jsonl", "w") as f:
        for epoch in range(1, 6):
            f.write(json.dumps({"epoch": epoch, "step": 12 * epoch, "test_acc": 0.1 * epoch}) + "\n")
    out = tmp_path / "page.html"
    out.write_text(page_of(path), encoding="utf-8")
    browser.get(out.resolve().as_uri() + "#frame=3")     # the frame labelled "frame 3"
    wait_for(browser, "return window.explorer !== undefined && window.explorer.drawn > 0")
    assert browser.execute_script("return [explorer.frame, explorer.ranked]") == [2, True]
    assert browser.execute_script("return document.getElementById('frame-label').textContent").startswith("frame 3/4")
    stats = browser.execute_script("return document.getElementById('stats').innerText")
    assert "epoch\t5" in stats and "40.0% (after epoch 4)" in stats, stats
    browser.execute_script("explorer.goTo(0)")
    wait_for(browser, "return document.body.dataset.frame === '0'")
    assert "0 (before training)" in browser.execute_script("return document.getElementById('stats').innerText")
    small = tmp_path / "small"
    make_run(small)
    (tmp_path / "small.html").write_text(page_of(small), encoding="utf-8")
    open_page(browser, tmp_path / "small.html")
    assert browser.execute_script("return explorer.ranked") is False
    assert_no_errors(browser)


def test_screenshot(browser, tmp_path):
    """$EXPLORER_SCREENSHOT_RUN's page, at a frame with churn, an edge hovered, as a 256-colour PNG."""
    run, target = os.environ.get("EXPLORER_SCREENSHOT_RUN"), os.environ.get("EXPLORER_SCREENSHOT")
    if not run or not target:
        pytest.skip("set EXPLORER_SCREENSHOT_RUN=RUN_DIR and EXPLORER_SCREENSHOT=out.png to take a screenshot")
    from PIL import Image
    out = tmp_path / "page.html"
    assert explore.main([run, "-o", str(out)]) == 0
    open_page(browser, out)
    frames = browser.execute_script("return explorer.frames")
    frame = int(os.environ.get("EXPLORER_SCREENSHOT_FRAME", frames // 2))
    browser.execute_script(f"explorer.goTo({frame})")
    wait_for(browser, f"return explorer.frame === {frame} && document.body.dataset.frame === '{frame}'")
    for cand in browser.execute_script("return explorer.changes().added"):
        x, y = browser.execute_script(f"return explorer.edgeScreen({cand})")
        hover(browser, x, y)
        if browser.execute_script("return explorer.hovered()") == {"kind": "edge", "id": cand}:
            break
    assert_no_errors(browser)
    with Image.open(io.BytesIO(browser.get_screenshot_as_png())) as im:
        quantised = im.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    quantised.save(target, format="PNG", optimize=True)
    assert os.path.getsize(target) < 400_000


def test_runs_with_several_wirings_explore_the_one_named(tmp_path):
    from run_dirs import make_multi_wiring_run
    run = make_multi_wiring_run(tmp_path / "run", {"stages-0-graph": 5, "stages-1-graph": 9})
    with pytest.raises(explore.UsageError, match="choose one with --wiring NAME"):
        load_frames(run)
    frames = load_frames(run, "stages-1-graph")
    assert len(frames) == 3 and frames.title == "run · stages-1-graph"
    assert all(len(real) == 9 for real in frames.real)
    out, _, count = explore.write_explorer(run, tmp_path / "w.html", wiring="stages-1-graph")
    assert count == 3 and "run · stages-1-graph" in out.read_text()


def test_the_payload_names_the_epoch_each_frame_lies_in(tmp_path):
    """Frames at steps 0, 10, 20, 30 of a run whose epochs end at steps 10, 20, 30: epoch 0
    (before training), then 1, 2, 3, as viz.sources.epoch_of says (the page shows these)."""
    make_run(tmp_path / "run", frames=4)
    payload = build_payload(load_frames(tmp_path / "run"))
    assert payload["frames"]["steps"] == [0, 10, 20, 30]
    assert payload["frames"]["epochs"] == [0, 1, 2, 3]


@pytest.mark.parametrize("mode, label", [("rigl", "RigL"), ("set", "SET"), ("dnw", "DNW"), ("old_mode", "old_mode")])
def test_the_subtitle_names_the_mode_by_its_label(tmp_path, mode, label):
    h = make_run(tmp_path / "run")
    h.attrs["mode"] = mode
    h.save(tmp_path / "run" / "history.pt")
    (tmp_path / "run" / "config.yaml").write_text(f"model: tiny\nmode: {mode}\n")
    frames = load_frames(tmp_path / "run")
    assert frames.subtitle == f"tiny · random_k · {label}"
