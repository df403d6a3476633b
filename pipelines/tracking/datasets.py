"""The data a run trained and was scored on, as MLflow dataset inputs (the run's Datasets).

A synthetic task has no files: its data is the generator, so a dataset's name and digest come
from the task spec (task, widths, lengths, seed, stream), and two runs on the same stream show
the same digest. MNIST's digest is that of the raw files actually read, and each split is named
with how it was cut.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.types import Schema, TensorSpec
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from datamodules.mnist import RAW_FILES, TRAIN_SIZE, VAL_SIZE
from datamodules.tasks import SyntheticTask

TASK_ATTRIBUTES = ("bits", "min_len", "max_len", "min_repeats", "max_repeats", "item_size")
_file_digests: dict[tuple[str, int, int], str] = {}


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _input(dataset: MetaDataset, context: str, **tags: str) -> DatasetInput:
    input_tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
    input_tags += [InputTag(f"ntmlab.{key}", value) for key, value in tags.items()]
    return DatasetInput(dataset._to_mlflow_entity(), input_tags)


def synthetic_inputs(
    task: SyntheticTask,
    seed: int,
    val_size: int,
    test_lengths: tuple[int, ...],
    test_size: int,
    long_val: tuple[int, tuple[int, ...]] = (0, ()),
) -> list[DatasetInput]:
    """Training stream, validation set, long validation set (``(size, lengths)``, when its
    size is not 0) and test sets of a synthetic task."""
    spec = {"task": task.name, "seed": seed}
    spec.update({key: getattr(task, key) for key in TASK_ATTRIBUTES if hasattr(task, key)})
    schema = Schema(
        [
            TensorSpec(np.dtype(np.float32), (-1, -1, task.input_width), "inputs"),
            TensorSpec(np.dtype(np.float32), (-1, -1, task.output_width), "targets"),
        ]
    )
    streams = [
        ("train", "training", {}),
        ("validation", "validation", {"size": val_size}),
        ("test", "test", {"size": test_size, "lengths": list(test_lengths)}),
    ]
    long_size, long_lengths = long_val
    if long_size:
        extra = {"size": long_size, "lengths": list(long_lengths)}
        streams.insert(2, ("long_validation", "validation", extra))
    inputs = []
    for stream, context, extra in streams:
        full = {**spec, "stream": stream, **extra}
        source = CodeDatasetSource({key: str(value) for key, value in full.items()})
        name = f"{task.name}-{stream}"
        dataset = MetaDataset(source, name=name, digest=_digest(full), schema=schema)
        inputs.append(_input(dataset, context, spec=json.dumps(full, sort_keys=True)))
    return inputs


def raw_files_digest(raw_dir: Path) -> str:
    """sha256 over MNIST's four raw files (``.gz`` where that is what is there)."""
    digest = hashlib.sha256()
    for name in RAW_FILES:
        path = raw_dir / name if (raw_dir / name).is_file() else raw_dir / f"{name}.gz"
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _file_digests:
            _file_digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(_file_digests[key].encode())
    return digest.hexdigest()[:12]


def mnist_inputs(
    root: Path, view: str, seed: int, train_subset: int | None, input_shape: tuple[int, ...]
) -> list[DatasetInput]:
    """Train, validation and test splits of the MNIST files under ``root/MNIST/raw``."""
    raw_dir = root / "MNIST" / "raw"
    files = raw_files_digest(raw_dir)
    with warnings.catch_warnings():  # MLflow registers its local source class twice
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(raw_dir.resolve()))
    schema = Schema(
        [
            TensorSpec(np.dtype(np.float32), (-1, *input_shape), "images"),
            TensorSpec(np.dtype(np.int64), (-1,), "labels"),
        ]
    )
    train_count = train_subset or TRAIN_SIZE
    splits = [
        (
            "train",
            "training",
            f"{train_count} of the {TRAIN_SIZE}-image split (seed {seed}) "
            "of the official training set",
        ),
        (
            "validation",
            "validation",
            f"the other {VAL_SIZE} images of the official training set (seed {seed})",
        ),
        ("test", "test", "the official 10,000-image test set"),
    ]
    inputs = []
    for split, context, how in splits:
        dataset = MetaDataset(source, name=f"mnist-{view}-{split}", digest=files, schema=schema)
        inputs.append(_input(dataset, context, split=how))
    return inputs
