"""MNIST and Fashion-MNIST as in-memory numpy arrays, from the first source that has them.

Sources, in order (``source='auto'``):
1. ``data_dir``: the four IDX files (``train-images-idx3-ubyte[.gz]`` …) in that folder;
2. tensorflow-datasets, when the dataset is prepared in its data dir (read with
   ``tfds.data_source``, which needs no TensorFlow: prepare with ``file_format='array_record'``);
3. a copy on this machine: the full MNIST shipped inside this package, or the IDX files that the
   Debian package ``dataset-fashion-mnist`` installs in ``/usr/share/datasets/fashion-mnist``.

The whole data set fits in memory (47 MB as uint8); ``pipeline.py`` batches it with grain.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from importlib import resources
from typing import NamedTuple, Optional

import numpy as np

SHIPPED_MNIST = str(resources.files("fogzo_jax.data") / "mnist")
SYSTEM_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
DATASETS = ("mnist", "fashion_mnist")
SOURCES = ("auto", "idx", "tfds", "shipped")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class DataError(ValueError):
  """The requested data cannot be found or read; the message says how to get it."""


class Dataset(NamedTuple):
  """Images uint8 [N, 28, 28], labels int32 [N], and where they came from."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  source: str


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (optionally gzipped): big-endian magic 0x0000 08 <ndim>, dims, uint8 data.

  Raises ``DataError`` naming the file when it is unreadable, empty, truncated or not IDX.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
  if len(data) < 4:
    raise DataError(f"{path} is not an IDX file: {len(data)} bytes")
  zero, dtype, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype != 0x08 or ndim == 0:
    raise DataError(f"{path} is not a uint8 IDX file (header {data[:8].hex()})")
  if len(data) < 4 + 4 * ndim:
    raise DataError(f"{path} is truncated: {len(data)} bytes, its header alone needs "
                    f"{4 + 4 * ndim}")
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if array.size != int(np.prod(shape)):
    raise DataError(f"{path} is truncated: {array.size} values for shape {shape}")
  return array.reshape(shape)


def _find(folder: str, stem: str) -> Optional[str]:
  for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
    if os.path.exists(os.path.join(folder, name)):
      return os.path.join(folder, name)
  return None


def has_idx(folder: str) -> bool:
  return all(_find(folder, stem) for pair in _FILES.values() for stem in pair)


def _load_idx(folder: str) -> tuple:
  arrays = []
  for split in ("train", "test"):
    paths = [_find(folder, stem) for stem in _FILES[split]]
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1:
      raise DataError(f"{paths[0]} / {paths[1]}: expected images [N, H, W] and labels [N]; got "
                      f"{images.shape} and {labels.shape}")
    if images.shape[0] != labels.shape[0]:
      raise DataError(f"{folder}: {split} has {images.shape[0]} images, {labels.shape[0]} labels")
    if images.shape[0] == 0:
      raise DataError(f"{paths[0]} holds no examples")
    if labels.max() >= 10:
      bad = int(np.argmax(labels >= 10))
      raise DataError(f"{paths[1]}: labels must be in 0 … 9; label {int(labels[bad])} at index "
                      f"{bad}")
    arrays += [images, labels.astype(np.int32)]
  return tuple(arrays)


def _load_tfds(name: str, tfds_data_dir: Optional[str]) -> tuple:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  arrays = []
  for split in ("train", "test"):
    source = tfds.data_source(name, split=split, data_dir=tfds_data_dir, download=False)
    examples = [source[i] for i in range(len(source))]
    arrays.append(np.stack([np.asarray(e["image"], np.uint8).reshape(28, 28)
                            for e in examples]))
    arrays.append(np.asarray([e["label"] for e in examples], np.int32))
  return tuple(arrays)


def _tfds_prepared(name: str, tfds_data_dir: Optional[str]) -> bool:
  root = tfds_data_dir or os.environ.get("TFDS_DATA_DIR",
                                         os.path.expanduser("~/tensorflow_datasets"))
  if not os.path.isdir(os.path.join(root, name)):
    return False
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    return tfds.builder(name, data_dir=tfds_data_dir).is_prepared()
  except Exception:  # pylint: disable=broad-except  # no tfds / unknown builder: not prepared
    return False


def _how_to_get(name: str) -> str:
  if name == "fashion_mnist":
    return ("Install it with `apt-get install dataset-fashion-mnist` (IDX files in "
            f"{SYSTEM_FASHION_MNIST}), give a folder with the four IDX files as data_dir, or "
            "prepare it with tensorflow-datasets (`tfds build fashion_mnist "
            "--file_format=array_record`).")
  return ("Give a folder with the four IDX files as data_dir, or prepare it with "
          "tensorflow-datasets (`tfds build mnist --file_format=array_record`).")


def load_image_dataset(name: str = "mnist", data_dir: Optional[str] = None,
                       source: str = "auto", tfds_data_dir: Optional[str] = None) -> Dataset:
  """Loads MNIST or Fashion-MNIST (module docstring for the order of sources).

  Args:
    name: "mnist" or "fashion_mnist".
    data_dir: folder holding the four IDX files; when given, nothing else is tried.
    source: "auto" | "idx" (needs data_dir) | "tfds" | "shipped" (the package's or system copy).
    tfds_data_dir: tensorflow-datasets' data dir (None: its default).
  """
  if name not in DATASETS:
    raise DataError(f"dataset must be one of {', '.join(map(repr, DATASETS))}; got {name!r}")
  if source not in SOURCES:
    raise DataError(f"source must be one of {', '.join(map(repr, SOURCES))}; got {source!r}")
  local = SHIPPED_MNIST if name == "mnist" else SYSTEM_FASHION_MNIST
  if data_dir or source == "idx":
    if not data_dir or not os.path.isdir(data_dir):
      raise DataError(f"data_dir {data_dir!r} is not a folder. {_how_to_get(name)}")
    if not has_idx(data_dir):
      raise DataError(f"data_dir {data_dir!r} lacks the IDX files "
                      f"({', '.join(s for p in _FILES.values() for s in p)}). {_how_to_get(name)}")
    return Dataset(*_load_idx(data_dir), source=f"IDX files in {data_dir}")
  if source == "tfds" or (source == "auto" and _tfds_prepared(name, tfds_data_dir)):
    try:
      return Dataset(*_load_tfds(name, tfds_data_dir), source=f"tensorflow-datasets '{name}'")
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(f"tensorflow-datasets could not read {name!r}: {e}. {_how_to_get(name)}")
  if has_idx(local):
    what = "full MNIST shipped with fogzo_jax" if name == "mnist" else "system package"
    return Dataset(*_load_idx(local), source=f"{what} ({local})")
  raise DataError(f"dataset {name!r} not found (no data_dir, not prepared in "
                  f"tensorflow-datasets, nothing in {local}). {_how_to_get(name)}")
