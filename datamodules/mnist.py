"""MNIST as a LightningDataModule with the views the classifiers need.

Views of one normalized image (mean 0.1307, std 0.3081, the usual MNIST statistics):

* ``flat``: ``[784]`` for the MLP and the unfolded LSTM (the whole image enters the first cell);
* ``image``: ``[1, 28, 28]`` for the CNN;
* ``rows``: 28 steps of 28 pixels (sequential MNIST by rows);
* ``pixels``: 784 steps of 1 pixel (pixel-by-pixel MNIST);
* ``permuted``: ``pixels`` in one fixed permutation drawn from ``permutation_seed``, the same for
  train, validation and test.

The whole dataset is held as one uint8 tensor and views are made per batch, so loading costs
nothing per epoch. Data comes from ``data_dir`` (or ``$NTMLAB_MNIST_DIR``) in torchvision's
layout (``<data_dir>/MNIST/raw``); without local files it is downloaded, and when that fails
the error says where to put the files.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset, default_collate

DATA_DIR_ENV = "NTMLAB_MNIST_DIR"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / "data"
VIEWS = ("flat", "image", "rows", "pixels", "permuted")
MEAN, STD = 0.1307, 0.3081
TRAIN_SIZE, VAL_SIZE = 55_000, 5_000
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class MNISTUnavailable(RuntimeError):
    """No local MNIST files and no way to download them."""


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """``data_dir``, else ``$NTMLAB_MNIST_DIR``, else ``<project>/data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def has_local_files(root: Path) -> bool:
    raw = root / "MNIST" / "raw"
    return all((raw / name).is_file() or (raw / f"{name}.gz").is_file() for name in RAW_FILES)


def load_split(root: Path, train: bool, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N,28,28]`` (uint8) and labels ``[N]`` of the official train or test split.

    Parsed once per process (parsing the raw files takes seconds; grids and tests reuse them).
    """
    if has_local_files(root):
        return _load_local(str(Path(root).resolve()), train)
    return _load(root, train, download)


@functools.lru_cache(maxsize=4)
def _load_local(root: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return _load(Path(root), train, download=False)


def _load(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST

    local = has_local_files(root)
    try:
        dataset = MNIST(str(root), train=train, download=download and not local)
    except (RuntimeError, OSError) as error:
        raise MNISTUnavailable(
            f"MNIST is not in {root / 'MNIST' / 'raw'} and could not be downloaded "
            f"({type(error).__name__}); put {', '.join(RAW_FILES)} there (or .gz) or point "
            f"--data_dir / ${DATA_DIR_ENV} at a directory that has MNIST/raw"
        ) from None
    return dataset.data, dataset.targets


def permutation(seed: int, size: int = 784) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(size, generator=generator)


def make_view(images: torch.Tensor, view: str, order: torch.Tensor | None = None) -> torch.Tensor:
    """Normalized float inputs of ``images`` (uint8 ``[B,28,28]``) in ``view``."""
    x = (images.float() / 255.0 - MEAN) / STD
    batch = x.shape[0]
    if view == "flat":
        return x.reshape(batch, 784)
    if view == "image":
        return x.reshape(batch, 1, 28, 28)
    if view == "rows":
        return x.reshape(batch, 28, 28)
    if view == "pixels":
        return x.reshape(batch, 784, 1)
    if view == "permuted":
        return x.reshape(batch, 784)[:, order].unsqueeze(-1)
    raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")


def _collate_in_view(
    samples: list[tuple[torch.Tensor, torch.Tensor]], view: str, order: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack uint8 images and labels, then put the batch in the model's view (a plain
    DataLoader, so Lightning can see and reseed its sampler)."""
    images, labels = default_collate(samples)
    return make_view(images, view, order), labels


class MNISTDataModule(pl.LightningDataModule):
    """Seeded 55,000/5,000 train/validation split of the official training set, the official
    10,000-image test set, and a view per model. ``train_subset`` keeps the first N training
    images of the split (quick runs and tests)."""

    def __init__(
        self,
        view: str = "flat",
        data_dir: str | Path | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
        permutation_seed: int = 0,
        train_subset: int | None = None,
        download: bool = True,
    ) -> None:
        super().__init__()
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")
        if batch_size < 1 or eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if train_subset is not None and not 1 <= train_subset <= TRAIN_SIZE:
            raise ValueError(f"train_subset must be in 1..{TRAIN_SIZE}, got {train_subset}")
        self.view, self.root = view, resolve_data_dir(data_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.train_subset, self.download = seed, train_subset, download
        self.order = permutation(permutation_seed) if view == "permuted" else None
        self._splits: dict[str, TensorDataset] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return {"flat": (784,), "image": (1, 28, 28), "rows": (28, 28)}.get(self.view, (784, 1))

    def setup(self, stage: str | None = None) -> None:
        if self._splits is not None:
            return
        images, labels = load_split(self.root, train=True, download=self.download)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
        train_index, val_index = order[:TRAIN_SIZE], order[TRAIN_SIZE : TRAIN_SIZE + VAL_SIZE]
        if self.train_subset is not None:
            train_index = train_index[: self.train_subset]
        test_images, test_labels = load_split(self.root, train=False, download=self.download)
        self._splits = {
            "train": TensorDataset(images[train_index], labels[train_index]),
            "val": TensorDataset(images[val_index], labels[val_index]),
            "test": TensorDataset(test_images, test_labels),
        }

    def split(self, name: str) -> TensorDataset:
        self.setup()
        return self._splits[name]

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return getattr(trainer, "global_rank", 0), getattr(trainer, "world_size", 1)

    def _loader(self, name: str, shuffle: bool, sharded: bool = True) -> DataLoader:
        """Under DDP (``sharded``) process ``rank`` of N gets its share: a seeded distributed
        shuffle for training, a contiguous slice of the evaluation sets (each image once)."""
        dataset = self.split(name)
        size = self.batch_size if name == "train" else self.eval_batch_size
        collate = functools.partial(_collate_in_view, view=self.view, order=self.order)
        rank, world = self._rank_and_world() if sharded else (0, 1)
        if world > 1 and shuffle:
            sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=self.seed)
            return DataLoader(dataset, batch_size=size, sampler=sampler, collate_fn=collate)
        if world > 1:
            part = torch.tensor_split(torch.arange(len(dataset)), world)[rank]
            return DataLoader(Subset(dataset, part.tolist()), batch_size=size, collate_fn=collate)
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset, batch_size=size, shuffle=shuffle, generator=generator, collate_fn=collate
        )

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def estimation_dataloader(self):
        """Training batches in the single-process order, the same in every DDP process (for
        the batch-norm population statistics)."""
        return self._loader("train", shuffle=True, sharded=False)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)
