import gzip
import struct

import numpy as np
import pytest

from hil.data import DataConfig, load_dataset, read_idx
from hil.errors import ConfigError


def test_digits_stratified_hold_out():
    data = load_dataset(DataConfig(dataset="digits", test_fraction=0.2), seed=0)
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    train_share = np.bincount(data.y_train) / len(data.y_train)
    test_share = np.bincount(data.y_test) / len(data.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    again = load_dataset(DataConfig(dataset="digits"), seed=0)
    np.testing.assert_array_equal(again.y_test, data.y_test)


def test_limits_keep_classes():
    data = load_dataset(DataConfig(train_limit=100, test_limit=50), seed=1)
    assert len(data.y_train) == 100 and len(data.y_test) == 50
    assert set(data.y_train) == set(range(10))


def write_idx(path, array, gz=False):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    raw = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def make_idx_folder(folder, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (30, 28, 28)), gz)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", np.arange(30) % 10, gz)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", rng.integers(0, 256, (10, 28, 28)), gz)
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", np.arange(10), gz)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(tmp_path, gz):
    make_idx_folder(tmp_path, gz)
    data = load_dataset(DataConfig(dataset="idx", path=str(tmp_path), pool=2))
    assert data.x_train.shape == (30, 196) and data.x_test.shape == (10, 196)
    assert data.n_classes == 10
    raw = read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    np.testing.assert_allclose(data.x_train[0, 0], raw[0, :2, :2].mean() / 255)


def test_idx_missing_file_names_it(tmp_path):
    make_idx_folder(tmp_path, False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ConfigError, match="t10k-labels-idx1-ubyte"):
        load_dataset(DataConfig(dataset="idx", path=str(tmp_path)))
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset(DataConfig(dataset="idx", path=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="data.path is required"):
        load_dataset(DataConfig(dataset="idx"))


def test_fashion_mnist_from_debian_package_if_installed():
    folder = "/usr/share/datasets/fashion-mnist"
    import os

    if not os.path.isdir(folder):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    data = load_dataset(DataConfig(dataset="idx", path=folder, train_limit=100, test_limit=50))
    assert data.x_train.shape == (100, 784) and data.n_classes == 10
