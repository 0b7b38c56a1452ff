"""Datasets and the batch sampler: the on-disk readers on tiny fake folders written here in the
exact CIFAR-10 / MNIST formats, the bundled and synthetic tasks, and resumable sampling."""

from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from scalewise.models.config import DataConfig
from scalewise.models.data import (
    CIFAR10_FOLDER,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    MNIST_FILES,
    BatchSampler,
    DataNotFoundError,
    load_dataset,
    read_idx,
    teacher_student,
    whitened_inputs,
)


def standardized(train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Ground truth in float64: ``x`` (N, C, H, W) standardized per channel by ``train``."""
    mean = train.astype(np.float64).mean(axis=(0, 2, 3), keepdims=True)
    std = train.astype(np.float64).std(axis=(0, 2, 3), keepdims=True)
    return (x.astype(np.float64) - mean) / std


# ------------------------------------------------------------------------------ CIFAR-10

def write_cifar(root: Path, per_batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Pickled batches as the CIFAR-10 "python version" holds them: a dict with bytes keys
    (pickled by Python 2), ``data`` (n, 3072) uint8 rows of R, G, B planes, ``labels`` a list."""
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    raw = {}
    for name in CIFAR10_TRAIN + CIFAR10_TEST:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as file:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, file,
                        protocol=2)
        raw[name] = (data, np.array(labels))
    train = np.concatenate([raw[n][0] for n in CIFAR10_TRAIN]).reshape(-1, 3, 32, 32)
    test = raw["test_batch"][0].reshape(-1, 3, 32, 32)
    return {"train": train, "test": test,
            "train_labels": np.concatenate([raw[n][1] for n in CIFAR10_TRAIN]),
            "test_labels": raw["test_batch"][1]}


def test_cifar10_reads_the_pickled_batches(tmp_path: Path) -> None:
    raw = write_cifar(tmp_path, per_batch=3, rng=np.random.default_rng(0))
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    assert data.in_shape == (3, 32, 32) and data.num_classes == 10
    assert len(data.train) == 15 and len(data.test) == 3
    for split, key in ((data.train, "train"), (data.test, "test")):
        np.testing.assert_allclose(split.inputs.double().numpy(),
                                   standardized(raw["train"], raw[key]), rtol=1e-5, atol=1e-5)
        assert torch.equal(split.targets, torch.from_numpy(raw[f"{key}_labels"]))
        assert split.inputs.dtype == torch.float32 and split.targets.dtype == torch.int64


def test_cifar10_root_may_be_the_batch_folder_itself(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=2, rng=np.random.default_rng(1))
    inner = load_dataset(DataConfig(name="cifar10", root=str(tmp_path / CIFAR10_FOLDER)), seed=0)
    outer = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)
    assert torch.equal(inner.train.inputs, outer.train.inputs)


def test_cifar10_pixel_layout_is_channel_row_column(tmp_path: Path) -> None:
    """Row entry ``c*1024 + h*32 + w`` is pixel (c, h, w): one bright pixel lands there."""
    write_cifar(tmp_path, per_batch=2, rng=np.random.default_rng(2))
    folder = tmp_path / CIFAR10_FOLDER
    with open(folder / "test_batch", "rb") as file:
        batch = pickle.load(file, encoding="bytes")
    batch[b"data"][1] = 0
    batch[b"data"][1, 2 * 1024 + 5 * 32 + 7] = 255
    with open(folder / "test_batch", "wb") as file:
        pickle.dump(batch, file, protocol=2)
    image = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0).test.inputs[1]
    assert image.argmax().item() == np.ravel_multi_index((2, 5, 7), (3, 32, 32))


# ------------------------------------------------------------------------------ MNIST

def idx_bytes(array: np.ndarray) -> bytes:
    """The idx format: 0, 0, type 0x08 (ubyte), ndim, big-endian uint32 dims, the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


@dataclass(frozen=True)
class MnistLayout:
    id: str
    folder: str  # under root
    gzipped: bool


MNIST_LAYOUTS = [
    MnistLayout("plain", ".", gzipped=False),
    MnistLayout("gzipped", ".", gzipped=True),
    MnistLayout("torchvision-raw", "MNIST/raw", gzipped=True),
]


def write_mnist(root: Path, layout: MnistLayout, rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder = root / layout.folder
    folder.mkdir(parents=True, exist_ok=True)
    raw = {}
    for split, n in (("train", 6), ("test", 4)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        for name, array in zip(MNIST_FILES[split], (images, labels)):
            payload = idx_bytes(array)
            if layout.gzipped:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
        raw[split], raw[f"{split}_labels"] = images[:, None], labels
    return raw


@pytest.mark.parametrize("layout", MNIST_LAYOUTS, ids=lambda layout: layout.id)
def test_mnist_reads_idx_files(tmp_path: Path, layout: MnistLayout) -> None:
    raw = write_mnist(tmp_path, layout, np.random.default_rng(3))
    data = load_dataset(DataConfig(name="mnist", root=str(tmp_path)), seed=0)
    assert data.in_shape == (1, 28, 28) and data.num_classes == 10
    for split, key in ((data.train, "train"), (data.test, "test")):
        np.testing.assert_allclose(split.inputs.double().numpy(),
                                   standardized(raw["train"], raw[key]), rtol=1e-5, atol=1e-5)
        assert torch.equal(split.targets, torch.from_numpy(raw[f"{key}_labels"].astype(np.int64)))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x00\x00\x0d\x01" + struct.pack(">I", 2) + b"\x00" * 8, "not an idx-ubyte file"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + b"\x00" * 5, "truncated"),
        (b"\x00", "not an idx-ubyte file"),
    ],
    ids=["float-type-code", "truncated", "too-short"],
)
def test_read_idx_rejects_bad_files(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


@pytest.mark.parametrize(
    "name, expected",
    [("cifar10", "cifar-10-batches-py/data_batch_1"), ("mnist", "train-images-idx3-ubyte")],
    ids=["cifar10", "mnist"],
)
def test_missing_folder_names_root_and_files(tmp_path: Path, name: str, expected: str) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match="data.root") as error:
        load_dataset(DataConfig(name=name, root=str(root)), seed=0)
    assert expected in str(error.value) and str(root) in str(error.value)
    assert isinstance(error.value, ValueError) and isinstance(error.value, FileNotFoundError)


def test_cifar10_batch_without_data_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=1, rng=np.random.default_rng(4))
    with open(tmp_path / CIFAR10_FOLDER / "data_batch_3", "wb") as file:
        pickle.dump({b"labels": [1]}, file, protocol=2)
    with pytest.raises(ValueError, match="data_batch_3 is not a CIFAR-10 batch"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path)), seed=0)


# ------------------------------------------------------------------------------ bundled, synthetic

def test_digits_split_is_fixed_by_seed_and_standardized() -> None:
    first = load_dataset(DataConfig(name="digits"), seed=0)
    again = load_dataset(DataConfig(name="digits"), seed=0)
    other = load_dataset(DataConfig(name="digits"), seed=1)
    assert first.in_shape == (1, 8, 8) and first.num_classes == 10
    assert (len(first.train), len(first.test)) == (1438, 359)
    assert torch.equal(first.train.inputs, again.train.inputs)
    assert not torch.equal(first.train.targets, other.train.targets)
    inputs = first.train.inputs.double()
    assert abs(inputs.mean().item()) < 1e-6 and abs(inputs.std(unbiased=False).item() - 1) < 1e-6
    assert set(first.train.targets.tolist()) == set(range(10))


def test_teacher_task_is_seeded_and_uses_every_class() -> None:
    first, again, other = (teacher_student(512, 128, seed=s) for s in (0, 0, 1))
    assert first.in_shape == (16,) and first.num_classes == 4
    assert torch.equal(first.train.inputs, again.train.inputs)
    assert torch.equal(first.test.targets, again.test.targets)
    assert not torch.equal(first.train.inputs, other.train.inputs)
    counts = torch.bincount(first.train.targets, minlength=4)
    assert counts.min().item() > 0.1 * 512  # no class is vanishingly rare


def test_teacher_labels_are_a_function_of_the_inputs() -> None:
    """A student that can represent the teacher fits its labels: the task is learnable, which
    shuffled labels would not be (nearest neighbours agree far above chance)."""
    data = teacher_student(2000, 500, seed=0)
    distances = torch.cdist(data.test.inputs.double(), data.train.inputs.double())  # (500, 2000)
    nearest = data.train.targets[distances.argmin(dim=1)]
    assert (nearest == data.test.targets).double().mean().item() > 0.5  # chance is ~0.25


@pytest.mark.parametrize("name", ["teacher", "digits"], ids=["teacher", "digits"])
def test_sizes_subsample_by_seed(name: str) -> None:
    config = DataConfig(name=name, train_size=100, test_size=30)
    data = load_dataset(config, seed=5)
    assert (len(data.train), len(data.test)) == (100, 30)
    assert torch.equal(data.train.inputs, load_dataset(config, seed=5).train.inputs)


# ------------------------------------------------------------------------------ sampling

def test_sampler_covers_each_epoch_without_repeats() -> None:
    sampler = BatchSampler(10, 3, seed=0)
    epochs = [torch.cat([sampler.next() for _ in range(3)]) for _ in range(4)]
    for epoch in epochs:
        assert len(set(epoch.tolist())) == 9  # 3 batches of 3, the partial 4th dropped
    assert not all(torch.equal(epochs[0], e) for e in epochs[1:])


def test_sampler_state_resumes_the_same_batches() -> None:
    sampler = BatchSampler(50, 8, seed=3)
    for _ in range(4):
        sampler.next()
    state = sampler.state_dict()
    expected = [sampler.next() for _ in range(12)]  # crosses two epoch boundaries
    resumed = BatchSampler(50, 8, seed=999)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, [resumed.next() for _ in range(12)]))


def test_sampler_refuses_a_batch_larger_than_the_data() -> None:
    with pytest.raises(ValueError, match="data.batch_size = 11 is invalid"):
        BatchSampler(10, 11, seed=0)


@pytest.mark.parametrize("centered", [False, True], ids=["second-moment", "centered"])
def test_whitened_inputs_have_exact_moments(centered: bool) -> None:
    x = whitened_inputs(40, 6, torch.Generator().manual_seed(0), centered=centered)
    eye = torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(x.T @ x / 40, eye, atol=1e-12, rtol=0)
    mean = x.mean(0)
    if centered:  # then the covariance is I as well
        torch.testing.assert_close(mean, torch.zeros(6, dtype=torch.float64), atol=1e-12, rtol=0)
    else:
        assert float(mean.norm()) > 1e-3
    with pytest.raises(ValueError, match="samples = 6 is invalid"):
        whitened_inputs(6, 6, torch.Generator(), centered=True)
