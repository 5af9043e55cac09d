"""Shared fixtures of the data tests."""

import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from fogzo_jax.data import images


def _cifar_archives(root, per_class=2, order_seed=0, size=(32, 32)):
  """CIFAR-10 tar.gz archives as shipped (``<split>/<class>/NNNN.jpg``), members shuffled.

  Each image is one colour (which JPEG keeps to within a few levels); returns path → pixels.
  """
  rng = np.random.default_rng(0)
  pixels = {}
  for split in ("train", "test"):
    names = [f"{split}/{c}/{i:04d}.jpg" for c in images.CIFAR10_CLASSES for i in range(per_class)]
    for name in names:
      os.makedirs(root / "src" / os.path.dirname(name), exist_ok=True)
      flat = rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)
      pixels[name] = np.broadcast_to(flat, (*size, 3))
      Image.fromarray(np.ascontiguousarray(pixels[name])).save(root / "src" / name, quality=95)
    with tarfile.open(root / images.CIFAR10_ARCHIVES[split], "w:gz") as tar:
      for k in np.random.default_rng(order_seed).permutation(len(names)):
        tar.add(root / "src" / names[k], arcname=names[k])
      tar.add(root / "src" / split / "airplane", arcname=f"{split}/airplane", recursive=False)
  return pixels


@pytest.fixture
def make_cifar_archives():
  """``make_cifar_archives(root, per_class=2, order_seed=0, size=(32, 32))`` → path → pixels."""
  return _cifar_archives
