"""The datasets of the measurements, held as tensors, and a resumable minibatch sampler.

Four tasks (:class:`~models.config.Dataset`):

- ``teacher``: Gaussian inputs ``x ~ N(0, I_16)`` labelled by the argmax of a random tanh
  teacher network (seeded), a task with known structure and no files;
- ``digits``: scikit-learn's bundled 8x8 digits (1797 images), split by seed;
- ``cifar10``: the "python version" of CIFAR-10, the folder ``cifar-10-batches-py`` of pickled
  batches ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``;
- ``mnist``: the four idx-ubyte files (``train-images-idx3-ubyte`` ...), gzipped or not.

:func:`whitened_inputs` draws the exactly whitened Gaussian inputs of the checks whose theory
assumes ``E[x x^T] = I`` (004 Theorem 1; 001 Sec. 3 with ``Sigma = I``).

CIFAR-10 and MNIST are read from ``data.root`` in their standard on-disk formats, parsed here
directly; nothing is ever downloaded. The CIFAR-10 batches are pickles, read by a restricted
unpickler that admits only what the format holds (NumPy arrays, lists, dicts, bytes and
numbers): a planted file that refers to anything else is refused before it can run code. Images are standardized per channel with statistics of the training split; inputs are
float32 ``(N, C, H, W)`` for images and ``(N, D)`` for the teacher task, targets int64 ``(N,)``.
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scalewise import checks
from scalewise.models.config import DataConfig, Dataset

TEACHER_IN_DIM = 16
TEACHER_HIDDEN = 32
TEACHER_CLASSES = 4
TEACHER_SIZES = (4096, 1024)  # default train and test sizes of the teacher task
DIGITS_TEST_FRACTION = 0.2

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08


class DataNotFoundError(FileNotFoundError, ValueError):
    """The files of a dataset are not where ``data.root`` says (a bad-input error, hence also a
    ``ValueError``)."""


@dataclass(frozen=True)
class Split:
    inputs: torch.Tensor  # (N, *in_shape) float32
    targets: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.targets)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Split:
        """On ``device``, the inputs as ``dtype`` (as they are when ``None``)."""
        return Split(self.inputs.to(device, dtype), self.targets.to(device))

    def subset(self, size: int | None, generator: torch.Generator) -> Split:
        """The first ``size`` examples of a random permutation (all of them when ``None``)."""
        if size is None or size >= len(self):
            return self
        keep = torch.randperm(len(self), generator=generator)[:size]
        return Split(self.inputs[keep], self.targets[keep])


@dataclass(frozen=True)
class Data:
    train: Split
    test: Split
    num_classes: int

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.train.inputs.shape[1:])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Data:
        return Data(self.train.to(device, dtype), self.test.to(device, dtype), self.num_classes)


def load_dataset(config: DataConfig, *, seed: int) -> Data:
    """The dataset ``config`` names, subsampled to ``train_size`` / ``test_size`` by ``seed``.

    Raises :class:`DataNotFoundError` naming ``data.root`` and the files expected when a dataset
    on disk is missing.
    """
    if config.name is Dataset.TEACHER:
        return teacher_student(config.train_size or TEACHER_SIZES[0],
                               config.test_size or TEACHER_SIZES[1], seed=seed)
    if config.name is Dataset.DIGITS:
        data = digits(seed=seed)
    else:
        reader = read_cifar10 if config.name is Dataset.CIFAR10 else read_mnist
        data = reader(Path(config.root))
    generator = torch.Generator().manual_seed(seed)
    return Data(data.train.subset(config.train_size, generator),
                data.test.subset(config.test_size, generator), data.num_classes)


# ------------------------------------------------------------------------------ synthetic

def teacher_student(train_size: int, test_size: int, *, seed: int) -> Data:
    """Inputs ``x ~ N(0, I_16)``, labels ``argmax_c f(x)_c`` of a random teacher
    ``f(x) = W2 tanh(W1 x)`` with ``W1 (32, 16)``, ``W2 (4, 32)`` drawn ``N(0, 1/fan_in)``.

    >>> data = teacher_student(8, 4, seed=0)
    >>> data.in_shape, data.num_classes, len(data.test)
    ((16,), 4, 4)
    """
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((TEACHER_HIDDEN, TEACHER_IN_DIM)) / np.sqrt(TEACHER_IN_DIM)
    w2 = rng.standard_normal((TEACHER_CLASSES, TEACHER_HIDDEN)) / np.sqrt(TEACHER_HIDDEN)
    x = rng.standard_normal((train_size + test_size, TEACHER_IN_DIM))  # (N, 16)
    labels = np.argmax(np.tanh(x @ w1.T) @ w2.T, axis=1)  # (N,)
    inputs = torch.from_numpy(x.astype(np.float32))
    targets = torch.from_numpy(labels.astype(np.int64))
    return Data(Split(inputs[:train_size], targets[:train_size]),
                Split(inputs[train_size:], targets[train_size:]), TEACHER_CLASSES)


def digits(*, seed: int) -> Data:
    """scikit-learn's 8x8 digits as ``(N, 1, 8, 8)`` images, 20% held out by ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = round(DIGITS_TEST_FRACTION * len(images))
    test, train = order[:n_test], order[n_test:]
    return _standardized(images[train], bunch.target[train], images[test], bunch.target[test], 10)


def _standardized(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, num_classes: int) -> Data:
    """Images ``(N, C, H, W)`` shifted and scaled per channel by the training statistics."""
    x_train = x_train.astype(np.float32)
    mean = x_train.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)  # (1, C, 1, 1)
    std = x_train.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        x = ((x.astype(np.float32) - mean) / std).astype(np.float32)
        return Split(torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64)))

    return Data(split(x_train, y_train), split(x_test, y_test), num_classes)


def whitened_inputs(samples: int, dim: int, generator: torch.Generator, *,
                    centered: bool = False) -> torch.Tensor:
    """``samples`` Gaussian inputs (samples, dim), float64, exactly whitened: their second
    moment ``X^T X / samples`` is exactly ``I`` (``sqrt(samples)`` times the orthonormal
    columns of a Gaussian matrix); with ``centered`` the columns are also orthogonal to the
    ones vector, so the sample mean is exactly 0 and the sample covariance exactly ``I``.

    >>> x = whitened_inputs(32, 3, torch.Generator().manual_seed(0), centered=True)
    >>> bool(torch.allclose(x.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12))
    True
    """
    checks.integer("samples", samples, dim + int(centered))  # whitening needs full rank
    gaussian = torch.randn(samples, dim, generator=generator, dtype=torch.float64)
    if centered:
        ones = torch.ones(samples, 1, dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.cat([ones, gaussian], dim=1))  # (samples, dim + 1)
        return q[:, 1:] * samples**0.5
    q, _ = torch.linalg.qr(gaussian)  # (samples, dim), q^T q = I
    return q * samples**0.5


# ------------------------------------------------------------------------------ files on disk

def _missing(root: Path, dataset: str, expected: list[str]) -> DataNotFoundError:
    return DataNotFoundError(
        f"data.root = {str(root)!r}: the {dataset} files are missing; expected "
        f"{', '.join(expected)} (nothing is downloaded: put the files there or pass another "
        "data.root)")


def read_cifar10(root: Path) -> Data:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (or ``root`` itself holding the batches)."""
    folder = root / CIFAR10_FOLDER if (root / CIFAR10_FOLDER).is_dir() else root
    names = CIFAR10_TRAIN + CIFAR10_TEST
    if not all((folder / name).is_file() for name in names):
        raise _missing(root, "CIFAR-10", [f"{CIFAR10_FOLDER}/{name}" for name in names])
    x_train, y_train = _cifar_batches(folder, CIFAR10_TRAIN)
    x_test, y_test = _cifar_batches(folder, CIFAR10_TEST)
    return _standardized(x_train, y_train, x_test, y_test, 10)


def _cifar_batches(folder: Path, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` of pickled batches."""
    images, labels = [], []
    for name in names:
        path = folder / name
        batch = read_cifar_batch(path)
        rows = np.asarray(_field(batch, "data", path), dtype=np.uint8)  # (n, 3072)
        images.append(rows.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(_field(batch, "labels", path), dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2, for latin-1 only."""
    if encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(f"an encoding {encoding!r} (bytes are pickled as latin-1)")
    return codecs.encode(text, "latin1")


_EMPTY = np.empty(0)
_PICKLE_GLOBALS = {  # every global a CIFAR-10 batch refers to, by NumPy 1 and 2, protocols 2-5
    ("numpy.core.multiarray", "_reconstruct"): _EMPTY.__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): _EMPTY.__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): _EMPTY.__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): _EMPTY.__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_PICKLE_GLOBALS`: arrays and plain data."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR-10 batch "
                                         "never holds (nothing was run)")
        return _PICKLE_GLOBALS[module, name]


def read_cifar_batch(path: Path) -> Any:
    """One pickled CIFAR-10 batch (a dict with bytes keys: the batches were pickled by Python 2)
    through the restricted unpickler; ``ValueError`` naming the file when it is not one."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
        return _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path} is not a CIFAR-10 batch: {reason}") from None


def _field(batch: Any, key: str, path: Path) -> Any:
    """``batch[key]``; the original batches were pickled by Python 2, so keys may be bytes."""
    for candidate in (key.encode(), key):
        if isinstance(batch, dict) and candidate in batch:
            return batch[candidate]
    raise ValueError(f"{path} is not a CIFAR-10 batch: it has no {key!r} entry")


def read_mnist(root: Path) -> Data:
    """MNIST from the idx-ubyte files in ``root`` or ``root/MNIST/raw`` (gzipped or not)."""
    splits = {}
    for split, names in MNIST_FILES.items():
        paths = [_find_idx(root, name) for name in names]
        if None in paths:
            expected = [f"{n} (or {n}.gz)" for pair in MNIST_FILES.values() for n in pair]
            raise _missing(root, "MNIST", expected)
        images, labels = (read_idx(path) for path in paths)
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(f"{paths[0]} and {paths[1]} do not hold images (N, H, W) and "
                             f"labels (N,): shapes {images.shape} and {labels.shape}")
        splits[split] = (images[:, None], labels)
    return _standardized(*splits["train"], *splits["test"], 10)


def _find_idx(root: Path, name: str) -> Path | None:
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte array in the idx format: two zero bytes, the type code 0x08, the number
    of dimensions, each dimension as a big-endian uint32, then the data (gzipped if ``.gz``)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        raw = file.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _IDX_UBYTE:
        raise ValueError(f"{path} is not an idx-ubyte file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.size} bytes")
    return data.reshape(shape)


# ------------------------------------------------------------------------------ sampling

class BatchSampler:
    """Minibatch indices: each epoch a fresh permutation of the training set drawn with a seeded
    ``torch.Generator``, cut into batches of ``batch_size``; the last partial batch is dropped so
    every step sees the same batch size (batch statistics, Fisher estimates). Its state (the
    generator, the epoch's permutation and the position in it) is part of a checkpoint, so a
    resumed run draws exactly the batches the uninterrupted one would."""

    def __init__(self, size: int, batch_size: int, *, seed: int) -> None:
        if batch_size > size:
            raise ValueError(f"data.batch_size = {batch_size} is invalid; allowed: at most the "
                             f"training set size {size}")
        self.size, self.batch_size = size, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._order = torch.empty(0, dtype=torch.int64)
        self._position = 0

    def next(self) -> torch.Tensor:
        """The indices ``(batch_size,)`` int64 of the next batch."""
        if self._position + self.batch_size > len(self._order):
            self._order = torch.randperm(self.size, generator=self.generator)
            self._position = 0
        batch = self._order[self._position:self._position + self.batch_size]
        self._position += self.batch_size
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "order": self._order.clone(),
                "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self._order = state["order"].clone()
        self._position = int(state["position"])
