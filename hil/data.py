"""Datasets: scikit-learn's digits (ships offline) and IDX folders (MNIST layout).

Features are scaled to [0, 1]; the split into train and test sets is stratified and seeded.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from hil.errors import ConfigError
from hil.schema import MAX_COUNT, Schema

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DataConfig(Schema):
    """Which dataset to train on.

    Attributes
    ----------
    dataset : ``"digits"`` or ``"idx"``
        ``digits``: scikit-learn's 8x8 handwritten digits (1797 images), split here.
        ``idx``: a folder in the MNIST layout (MNIST, Fashion-MNIST, KMNIST), with its own
        train/test split; files may be gzipped.
    path : str, optional
        The IDX folder (``dataset: idx`` only).
    test_fraction : float
        Hold-out fraction for ``digits``.
    train_limit, test_limit : int, optional
        Use only the first N (stratified) samples, for quick runs.
    pool : int
        Average-pool images by this factor (IDX only; 28x28 with pool 2 gives 14x14).
    """

    dataset: Literal["digits", "idx"] = "digits"
    path: str | None = Field(None, max_length=4096)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    train_limit: int | None = Field(None, gt=0, le=MAX_COUNT)
    test_limit: int | None = Field(None, gt=0, le=MAX_COUNT)
    pool: int = Field(1, ge=1, le=64)


@dataclass(frozen=True)
class Dataset:
    """Features in [0, 1] and integer labels.

    Attributes
    ----------
    x_train : ndarray, shape (n_train, features)
    y_train : ndarray of int, shape (n_train,)
    x_test : ndarray, shape (n_test, features)
    y_test : ndarray of int, shape (n_test,)
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        """Features per sample."""
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        """Classes (the largest label plus one)."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def load_dataset(config: DataConfig, seed: int = 0) -> Dataset:
    """Load and split the configured dataset."""
    if config.dataset == "digits":
        data = _digits(config, seed)
    else:
        data = _idx(config)
    return Dataset(
        data.name,
        *_limit(data.x_train, data.y_train, config.train_limit, seed, "train_limit"),
        *_limit(data.x_test, data.y_test, config.test_limit, seed, "test_limit"),
    )


def _digits(config: DataConfig, seed: int) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data / 16.0
    x_tr, x_te, y_tr, y_te = train_test_split(
        x,
        digits.target,
        test_size=config.test_fraction,
        stratify=digits.target,
        random_state=seed,
    )
    return Dataset("digits", x_tr, y_tr, x_te, y_te)


def _limit(
    x: np.ndarray, y: np.ndarray, limit: int | None, seed: int, field: str
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``limit`` samples of a seeded stratified subsample, in their original order."""
    if limit is None or limit >= len(y):
        return x, y
    from sklearn.model_selection import train_test_split

    try:
        keep, _ = train_test_split(
            np.arange(len(y)), train_size=limit, stratify=y, random_state=seed
        )
    except ValueError as exc:  # fewer samples than classes, or a class of one
        raise ConfigError(f"data.{field} = {limit} cannot keep every class: {exc}") from None
    keep = np.sort(keep)
    return x[keep], y[keep]


def _idx(config: DataConfig) -> Dataset:
    if config.path is None:
        raise ConfigError("data.path is required when data.dataset is 'idx'")
    folder = Path(config.path).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"data.path: IDX folder {folder} does not exist")
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in IDX_FILES.items()}
    x_tr = _pool(arrays["train_images"], config.pool)
    x_te = _pool(arrays["test_images"], config.pool)
    return Dataset(
        folder.name,
        x_tr,
        arrays["train_labels"].astype(int),
        x_te,
        arrays["test_labels"].astype(int),
    )


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"data.path: {folder} has no {stem} (or {stem}.gz)")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ConfigError(f"{path} is truncated: expected {int(np.prod(shape))} values")
    return data.reshape(shape)


def _pool(images: np.ndarray, factor: int) -> np.ndarray:
    n, h, w = images.shape
    x = images.astype(float) / 255.0
    if factor > 1:
        h2, w2 = h // factor, w // factor
        x = x[:, : h2 * factor, : w2 * factor].reshape(n, h2, factor, w2, factor).mean((2, 4))
    return x.reshape(n, -1)
