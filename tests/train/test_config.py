"""Tests for wiring.train.config: defaults, YAML files, command-line precedence, validation."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from wiring.modes import MODES
from wiring.presets import PRESETS
from wiring.train.config import Config, ConfigError, build_parser, config_from_dict, parse_config


def write(tmp_path, text, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# ----------------------------------------------------------------------------- defaults

def test_defaults():
    cfg = parse_config([])
    assert cfg == Config()
    assert (cfg.model, cfg.graph, cfg.graph_file, cfg.edges, cfg.mode) == ("tiny", "random_k", None, 12000, "dnw")
    assert (cfg.td_rho, cfg.from_run, cfg.data, cfg.image_size) == (0.95, None, "digits", None)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == (30, 128, 0.1, 0.9, 1e-4)
    assert (cfg.schedule, cfg.milestones, cfg.gamma) == ("cosine", [80, 120], 0.1)
    assert (cfg.seed, cfg.device, cfg.out, cfg.resume, cfg.overwrite) == (0, "auto", None, False, False)
    assert (cfg.snapshot_every, cfg.eval_batch_size, cfg.progress, cfg.config) == (10, 512, "auto", None)
    # a fresh default list each time
    assert Config().milestones is not Config().milestones


def test_command_line_values_and_types(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = parse_config(["--edges", "500", "--lr", "0.05", "--mode", "fine_tune", "--from", str(run),
                        "--batch-size", "32", "--milestones", "3", "7", "--resume", "--td-rho", "0.5",
                        "--image-size", "16", "--device", "cpu", "--weight-decay", "0"])
    assert cfg.edges == 500 and isinstance(cfg.edges, int)
    assert cfg.lr == 0.05 and isinstance(cfg.lr, float)
    assert cfg.mode == "fine_tune" and cfg.from_run == str(run)
    assert cfg.batch_size == 32 and cfg.milestones == [3, 7] and cfg.resume is True
    assert cfg.td_rho == 0.5 and cfg.image_size == 16 and cfg.device == "cpu" and cfg.weight_decay == 0.0
    assert cfg.overwrite is False


def test_parser_choices_reject_unknown_values():
    for argv in (["--mode", "magic"], ["--graph", "star"], ["--data", "svhn"], ["--model", "resnet"]):
        with pytest.raises(ConfigError, match="invalid choice"):     # one line, no usage block
            parse_config(argv)
    # every mode and preset is offered
    text = build_parser().format_help()
    for name in list(MODES) + list(PRESETS):
        assert name in text


# ----------------------------------------------------------------------------- YAML

def test_yaml_loaded_with_dashes_underscores_and_from(tmp_path):
    run = tmp_path / "trained"
    run.mkdir()
    path = write(tmp_path, f"batch-size: 64\nweight_decay: 0.0005\nfrom: {run}\nmode: fine_tune\n"
                           f"lr: 0.05\nmilestones: [10, 20]\ntd-rho: 0.8\nedges: 300\n")
    cfg = parse_config(["--config", path])
    assert cfg.batch_size == 64 and cfg.weight_decay == 0.0005
    assert cfg.from_run == str(run) and cfg.mode == "fine_tune"
    assert cfg.lr == 0.05 and cfg.milestones == [10, 20] and cfg.td_rho == 0.8 and cfg.edges == 300
    assert cfg.config == path
    # from_run spelled as the field name works too
    path2 = write(tmp_path, f"from_run: {run}\nmode: lottery\n", "b.yaml")
    assert parse_config(["--config", path2]).from_run == str(run)


def test_command_line_wins_over_yaml(tmp_path):
    path = write(tmp_path, "lr: 0.5\nbatch-size: 64\nepochs: 3\nresume: false\n")
    cfg = parse_config(["--config", path, "--lr", "0.01", "--batch-size", "16", "--resume"])
    assert cfg.lr == 0.01 and cfg.batch_size == 16 and cfg.resume is True
    assert cfg.epochs == 3                                          # YAML still beats the default
    cfg = parse_config(["--lr", "0.01", "--config", path])          # order of flags does not matter
    assert cfg.lr == 0.01 and cfg.batch_size == 64


def test_yaml_int_value_for_float_field(tmp_path):
    cfg = parse_config(["--config", write(tmp_path, "lr: 1\nweight-decay: 0\n")])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert isinstance(cfg.weight_decay, float)


def test_empty_yaml_is_defaults(tmp_path):
    path = write(tmp_path, "")
    cfg = parse_config(["--config", path])
    assert dataclasses.replace(cfg, config=None) == Config()


@pytest.mark.parametrize("key", ["learning_rate", "batchsize", "config", "from-dir"])
def test_unknown_yaml_key_named(tmp_path, key):
    path = write(tmp_path, f"lr: 0.1\n{key}: 3\n")
    with pytest.raises(ConfigError, match=f"--config: unknown setting '{key}'"):
        parse_config(["--config", path])


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "lr: [0.1, 0.2\nedges: 3\n")
    with pytest.raises(ConfigError, match="--config: .* is not valid YAML"):
        parse_config(["--config", path])


def test_yaml_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="--config: .* must hold a mapping"):
        parse_config(["--config", write(tmp_path, "- lr\n- edges\n")])
    with pytest.raises(ConfigError, match="--config: no such file"):
        parse_config(["--config", str(tmp_path / "missing.yaml")])


def test_yaml_bad_type_named(tmp_path):
    with pytest.raises(ConfigError, match="^--lr: expected float"):
        parse_config(["--config", write(tmp_path, "lr: fast\n")])
    with pytest.raises(ConfigError, match="^--batch-size: expected int"):
        parse_config(["--config", write(tmp_path, "batch_size: many\n", "b.yaml")])


def test_unknown_model_via_yaml_named(tmp_path):
    with pytest.raises(ConfigError, match="^--model"):
        parse_config(["--config", write(tmp_path, "model: resnet\n")])


def test_yaml_string_bool_not_silently_true(tmp_path):
    try:
        cfg = parse_config(["--config", write(tmp_path, "resume: 'false'\n")])
    except ConfigError:
        return
    assert cfg.resume is False


def test_yaml_fractional_edges_rejected(tmp_path):
    with pytest.raises(ConfigError, match="--edges"):
        parse_config(["--config", write(tmp_path, "edges: 2.7\n")])


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("argv, flag", [
    (["--edges=0"], "--edges"),
    (["--edges=-5"], "--edges"),
    (["--graph", "graphml"], "--graph-file"),
    (["--graph-file", "/nonexistent/wiring.graphml"], "--graph-file"),
    (["--mode", "fine_tune"], "--from"),
    (["--mode", "lottery"], "--from"),
    (["--from", "/nonexistent/run"], "--from"),
    (["--lr=-0.1"], "--lr"),
    (["--momentum=-1"], "--momentum"),
    (["--weight-decay=-1e-4"], "--weight-decay"),
    (["--device", "gpu"], "--device"),
    (["--device", "tpu:0"], "--device"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--eval-batch-size", "0"], "--eval-batch-size"),
    (["--snapshot-every", "0"], "--snapshot-every"),
    (["--td-rho", "1.5"], "--td-rho"),
    (["--image-size", "4"], "--image-size"),
    (["--progress", "fancy"], "--progress"),
])
def test_validation_names_flag(argv, flag):
    with pytest.raises(ConfigError, match=f"^{flag}: "):
        parse_config(argv)


@pytest.mark.parametrize("text, flag", [
    ("mode: magic\n", "--mode"),
    ("graph: star\n", "--graph"),
    ("data: svhn\n", "--data"),
    ("schedule: linear\n", "--schedule"),
    ("edges: 0\n", "--edges"),
])
def test_validation_via_config_file_names_flag(tmp_path, text, flag):
    with pytest.raises(ConfigError, match=f"^{flag}: ") as err:
        parse_config(["--config", write(tmp_path, text)])
    if flag == "--mode":
        for name in MODES:
            assert name in str(err.value)


def test_valid_edge_cases(tmp_path):
    wiring_file = tmp_path / "w.graphml"
    wiring_file.write_text("<graphml/>")
    assert parse_config(["--graph", "graphml", "--graph-file", str(wiring_file)]).graph == "graphml"
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert parse_config(["--device", device]).device == device
    for rho in ("0", "1"):
        assert parse_config(["--td-rho", rho]).td_rho == float(rho)
    assert parse_config(["--lr", "0"]).lr == 0.0
    assert parse_config(["--image-size", "8"]).image_size == 8


# ----------------------------------------------------------------------------- dicts

def test_config_from_dict_round_trip(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    cfg = parse_config(["--edges", "700", "--mode", "fine_tune", "--from", str(run), "--lr", "0.02",
                        "--milestones", "5", "9", "--resume", "--image-size", "28", "--seed", "3",
                        "--data", "mnist", "--graph", "ws", "--out", str(tmp_path / "o")])
    back = config_from_dict(cfg.to_dict())
    assert back == cfg
    # and through YAML text, as saved in every run directory
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    assert config_from_dict(Config().to_dict()) == Config()


def test_config_from_dict_values():
    cfg = config_from_dict({"edges": None, "lr": "0.5", "epochs": 3.0})
    assert cfg.edges is None                     # every candidate real
    assert cfg.lr == 0.5 and isinstance(cfg.lr, float)
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    with pytest.raises(ConfigError, match="unknown setting 'speed'"):
        config_from_dict({"speed": 3})
    with pytest.raises(ConfigError, match="^--epochs: expected int"):
        config_from_dict({"epochs": "many"})


def test_to_dict_is_plain():
    d = Config().to_dict()
    assert d["milestones"] == [80, 120] and d["from_run"] is None
    assert set(d) == {f.name for f in dataclasses.fields(Config)}
    yaml.safe_dump(d)                            # only plain types


def test_edges_for_a_model_whose_budget_is_its_width_is_refused(tmp_path):
    # mobilenet models take k per stage from --width: an --edges the user asks for is a mistake
    assert parse_config(["--model", "mobilenetv1_dnw", "--width", "0.25"]).edges == 12000   # the default: fine
    with pytest.raises(ConfigError, match="--edges: mobilenetv1_dnw takes its real edges per stage from --width"):
        parse_config(["--model", "mobilenetv1_dnw", "--edges", "500"])
    path = tmp_path / "c.yaml"
    path.write_text("model: mobilenetv1_dnw_small\nedges: 500\n")
    with pytest.raises(ConfigError, match="--edges: mobilenetv1_dnw_small"):
        parse_config(["--config", str(path)])
    # a resumed run's saved edges are not the user's request
    assert parse_config([], base={"model": "mobilenetv1_dnw", "edges": 31045}).edges == 31045
    assert parse_config(["--model", "tiny", "--edges", "500"]).edges == 500


# ----------------------------------------------------------------------------- init and schedules

def test_init_default_choices_and_old_saved_configs():
    from wiring.train.config import config_from_saved
    assert Config().init == "authors" and parse_config([]).init == "authors"
    assert parse_config(["--init", "kaiming"]).init == "kaiming"
    with pytest.raises(ConfigError, match="--init"):
        parse_config(["--init", "xavier"])
    with pytest.raises(ConfigError, match="--init: unknown init 'xavier'"):
        config_from_dict({"init": "xavier"}).validate()
    # a run saved before --init existed was trained with kaiming: resuming or rebuilding it keeps that
    old = {k: v for k, v in Config(edges=500).to_dict().items() if k != "init"}
    assert parse_config([], base=old).init == "kaiming"
    assert config_from_saved(old).init == "kaiming"
    assert config_from_saved({**old, "init": "authors"}).init == "authors"
    assert config_from_dict(old).init == "authors"           # a new config (a study's base) gets the default


def _lrs(scheduler_cfg: Config, steps_per_epoch: int, epochs: int, scheduler=None, optimizer=None):
    """The learning rate each optimizer step used, over ``epochs`` epochs of ``steps_per_epoch``."""
    import torch

    from wiring.train.schedule import make_scheduler
    if optimizer is None:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=scheduler_cfg.lr)
        scheduler = make_scheduler(scheduler_cfg, optimizer, steps_per_epoch)
    used = []
    for _ in range(epochs):
        for _ in range(steps_per_epoch):
            used.append(optimizer.param_groups[0]["lr"])        # the rate this step uses
            optimizer.step()
        scheduler.step()                                        # the trainer's per-epoch call
    return used, scheduler, optimizer


def test_cosine_step_schedule_is_stepped_every_iteration_exactly():
    import math
    cfg = Config(schedule="cosine_step", epochs=2, lr=0.1)
    used, scheduler, _ = _lrs(cfg, 3, 2)
    assert used == [0.1 * 0.5 * (1 + math.cos(math.pi * t / 6)) for t in range(6)]
    assert used[0] == 0.1 and scheduler.state_dict()["iteration"] == 6
    # per-epoch cosine: constant within an epoch, 0.5 (1 + cos(pi e / E))
    used, _, _ = _lrs(Config(schedule="cosine", epochs=2, lr=0.1), 3, 2)
    assert used == [0.1] * 3 + [0.1 * 0.5 * (1 + math.cos(math.pi / 2))] * 3
    # multistep: x gamma at the milestones
    used, _, _ = _lrs(Config(schedule="multistep", epochs=3, lr=0.1, milestones=[1, 2], gamma=0.5), 2, 3)
    assert used == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]


def test_cosine_step_resumes_where_it_stopped():
    import torch

    from wiring.train.schedule import make_scheduler
    cfg = Config(schedule="cosine_step", epochs=3, lr=0.2)
    whole, _, _ = _lrs(cfg, 4, 3)
    first, scheduler, _ = _lrs(cfg, 4, 1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    again = make_scheduler(cfg, optimizer, 4)
    again.load_state_dict(scheduler.state_dict())
    rest, _, _ = _lrs(cfg, 4, 2, scheduler=again, optimizer=optimizer)
    assert first + rest == whole
