import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fogzo_jax import data as data_lib
from fogzo_jax.data import mnist

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def write_idx(path, array):
  header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def make_idx_dir(folder, n_train=12, n_test=5):
  rng = np.random.default_rng(0)
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"),
              rng.integers(0, 256, (n, 28, 28)))
    write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), rng.integers(0, 10, n))
  return folder


def test_shipped_full_mnist():
  d = data_lib.load_image_dataset("mnist")
  assert "shipped" in d.source
  assert d.train_images.shape == (60000, 28, 28) and d.test_images.shape == (10000, 28, 28)
  assert d.train_images.dtype == np.uint8 and d.train_labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(d.test_labels), MNIST_TEST_COUNTS)
  # Nearest class mean on the real files: the known 82.03 % test accuracy.
  x = d.train_images.reshape(60000, -1).astype(np.float32)
  means = np.stack([x[d.train_labels == c].mean(0) for c in range(10)])
  xt = d.test_images.reshape(10000, -1).astype(np.float32)
  dist = (xt ** 2).sum(1)[:, None] - 2 * xt @ means.T + (means ** 2).sum(1)[None]
  assert np.mean(dist.argmin(1) == d.test_labels) == pytest.approx(0.8203, abs=1e-4)


def test_idx_data_dir(tmp_path):
  make_idx_dir(str(tmp_path))
  d = data_lib.load_image_dataset("mnist", data_dir=str(tmp_path))
  assert d.train_images.shape == (12, 28, 28) and d.test_labels.shape == (5,)
  assert str(tmp_path) in d.source


def test_read_idx_rejects_bad_files(tmp_path):
  bad = tmp_path / "x.gz"
  with gzip.open(bad, "wb") as f:
    f.write(struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">I", 3) + b"\0" * 12)
  with pytest.raises(data_lib.DataError, match="not a uint8 IDX"):
    data_lib.read_idx(str(bad))
  trunc = tmp_path / "t.gz"
  with gzip.open(trunc, "wb") as f:
    f.write(struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 10) + b"\0" * 3)
  with pytest.raises(data_lib.DataError, match="truncated"):
    data_lib.read_idx(str(trunc))


def test_tfds_path_with_mock_data():
  with tfds.testing.mock_data(num_examples=16):
    d = data_lib.load_image_dataset("mnist", source="tfds")
  assert d.train_images.shape == (16, 28, 28) and d.train_images.dtype == np.uint8
  assert d.train_labels.shape == (16,) and d.train_labels.max() < 10
  assert "tensorflow-datasets" in d.source


def test_missing_data_errors(tmp_path):
  with pytest.raises(data_lib.DataError, match="is not a folder.*IDX files"):
    data_lib.load_image_dataset("mnist", data_dir=str(tmp_path / "nope"))
  with pytest.raises(data_lib.DataError, match="lacks the IDX files"):
    data_lib.load_image_dataset("mnist", data_dir=str(tmp_path))
  with pytest.raises(data_lib.DataError, match="dataset must be one of 'mnist', 'fashion_mnist'"):
    data_lib.load_image_dataset("cifar10")


@pytest.mark.skipif(not mnist.has_idx(mnist.SYSTEM_FASHION_MNIST),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_system_fashion_mnist():
  d = data_lib.load_image_dataset("fashion_mnist")
  assert d.train_images.shape == (60000, 28, 28) and d.test_images.shape == (10000, 28, 28)
  np.testing.assert_array_equal(np.bincount(d.test_labels), [1000] * 10)
