"""Image sources (ImageFolder of real JPEGs, tfds mock, CIFAR-10 files) and transforms."""

import os
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fogzo_jax.data import DataError, images

SHARED_CIFAR = os.path.join(os.path.dirname(__file__), *[os.pardir] * 3, "shared", "data",
                            "images", "cifar10_jpeg", "cifar10_test_jpg.tar.gz")


def make_folder(root, classes, per_class=2, size=(40, 30), split="train"):
  rng = np.random.default_rng(0)
  for c in classes:
    os.makedirs(root / split / c, exist_ok=True)
    for i in range(per_class):
      pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(root / split / c / f"{i}.JPEG", quality=90)


def test_image_folder_reads_real_jpegs(tmp_path):
  make_folder(tmp_path, ["b_cls", "a_cls"], per_class=3)
  (tmp_path / "train" / "a_cls" / "notes.txt").write_text("not an image")
  src = images.FolderSource(str(tmp_path), "train")
  assert len(src) == 6 and src.num_classes == 2
  image, label = src[0]
  assert image.shape == (40, 30, 3) and image.dtype == np.uint8 and label == 0  # sorted classes
  assert list(src.labels) == [0, 0, 0, 1, 1, 1]


def test_imagenet100_class_list_and_subset(tmp_path):
  wnids = images.imagenet100_classes()
  assert len(wnids) == 100 == len(set(wnids)) and all(w.startswith("n") for w in wnids)
  make_folder(tmp_path, wnids + ["n99999999"], per_class=1, size=(8, 8))
  src = images.FolderSource(str(tmp_path), "train", wnids)
  assert src.num_classes == 100 and len(src) == 100           # the extra class is left out
  with pytest.raises(DataError, match="lacks 1 of the 101 class folders"):
    images.FolderSource(str(tmp_path), "train", wnids + ["n00000001"])
  with pytest.raises(DataError, match="does not exist"):
    images.FolderSource(str(tmp_path), "val")


def test_tfds_imagenet_with_mock_data():
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    src = images.TfdsSource("imagenet2012", "train")
    image, label = src[3]
  assert len(src) == 6 and src.num_classes == 1000 and image.ndim == 3 and 0 <= label < 1000


def test_unprepared_tfds_names_the_steps(tmp_path):
  with pytest.raises(DataError, match="tfds build imagenet2012 --data_dir"):
    images.TfdsSource("imagenet2012", "train", str(tmp_path))


@pytest.mark.skipif(not os.path.exists(SHARED_CIFAR), reason="shared CIFAR-10 JPEGs absent")
def test_cifar10_jpegs_as_image_folder(tmp_path):
  with tarfile.open(SHARED_CIFAR) as tar:
    members = [m for m in tar.getmembers() if m.isfile()][::50]  # 200 of the 10,000
    tar.extractall(tmp_path, members=members, filter="data")
  src = images.FolderSource(str(tmp_path), "test")
  assert src.num_classes == 10 and len(src) == 200
  pixels = np.stack([src[i][0] for i in range(len(src))])
  assert pixels.shape[1:] == (32, 32, 3)
  assert 100 < pixels.mean() < 140  # CIFAR-10's mean intensity ≈ 121


def test_cifar10_archives_decode_into_memory_in_path_order(tmp_path, make_cifar_archives):
  pixels = make_cifar_archives(tmp_path)
  train, test = images.load_cifar10(str(tmp_path))
  assert isinstance(train, images.ArraySource) and train.num_classes == 10
  assert train.images.shape == (20, 32, 32, 3) and train.images.dtype == np.uint8
  assert list(train.labels) == [k // 2 for k in range(20)] and len(test) == 20
  # Example k is the k-th path in sorted order, whatever the archive's member order.
  first_truck = pixels["train/truck/0000.jpg"].astype(int)
  assert np.abs(train.images[18].astype(int) - first_truck).max() <= 3
  again = tmp_path / "again"
  again.mkdir()
  make_cifar_archives(again, order_seed=1)
  np.testing.assert_array_equal(images.load_cifar10(str(again))[0].images, train.images)


def test_cifar10_extracted_trees_give_the_archives_arrays(tmp_path, make_cifar_archives):
  make_cifar_archives(tmp_path)
  from_archives = images.load_cifar10(str(tmp_path))
  tree = tmp_path / "src"  # the same JPEG files, extracted
  from_tree = images.load_cifar10(str(tree))
  for a, b in zip(from_archives, from_tree):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_cifar10_bad_archives_are_named(tmp_path, make_cifar_archives):
  with pytest.raises(DataError, match="holds neither cifar10_train_jpg.tar.gz and cifar10_test"):
    images.load_cifar10(str(tmp_path))
  (tmp_path / "bad.tar.gz").write_bytes(b"not a tar archive")
  with pytest.raises(DataError, match="bad.tar.gz cannot be read"):
    images.cifar10_archive(str(tmp_path / "bad.tar.gz"), "train")
  odd = tmp_path / "odd"
  os.makedirs(odd / "train" / "zebra")
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(odd / "train" / "zebra" / "0.jpg")
  with tarfile.open(tmp_path / "odd.tar.gz", "w:gz") as tar:
    tar.add(odd / "train", arcname="train")
  with pytest.raises(DataError, match="class folder 'zebra', not one of CIFAR-10's airplane"):
    images.cifar10_archive(str(tmp_path / "odd.tar.gz"), "train")
  with pytest.raises(DataError, match="holds no CIFAR-10 images"):
    images.cifar10_archive(str(tmp_path / "odd.tar.gz"), "test")
  broken = tmp_path / "broken"
  make_cifar_archives(broken, per_class=1)
  (broken / "src" / "test" / "cat" / "0000.jpg").write_bytes(b"not a jpeg")
  with pytest.raises(DataError, match=r"cat/0000.jpg cannot be read \(UnidentifiedImageError"):
    images.load_cifar10(str(broken / "src"))  # the extracted trees
  big = tmp_path / "big"
  big.mkdir()
  make_cifar_archives(big, per_class=1, size=(40, 40))
  with pytest.raises(DataError, match=r"CIFAR-10 images are 32x32 RGB; found shapes \[\(40, 40"):
    images.load_cifar10(str(big))


@pytest.mark.skipif(not os.path.exists(SHARED_CIFAR), reason="shared CIFAR-10 JPEGs absent")
def test_shipped_cifar10_test_archive_is_cifar10():
  src = images.cifar10_archive(SHARED_CIFAR, "test")
  assert src.images.shape == (10000, 32, 32, 3)
  assert np.bincount(src.labels).tolist() == [1000] * 10
  # The data README's decoded means (CIFAR-10's known test-set means, after JPEG).
  np.testing.assert_allclose(src.images.reshape(-1, 3).mean(0), [126.0, 123.7, 114.8], atol=0.1)


def test_transforms_shapes_and_determinism():
  rng_image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
  assert images.eval_transform(rng_image, 224).shape == (224, 224, 3)
  for augment in images.AUGMENTATIONS:
    a = images.train_transform(rng_image, 64, augment, "imagenet", np.random.default_rng(5))
    b = images.train_transform(rng_image, 64, augment, "imagenet", np.random.default_rng(5))
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
  small = np.random.default_rng(2).integers(0, 256, (28, 28, 1), dtype=np.uint8)
  out = images.train_transform(small, 28, "crop_flip", "unit", np.random.default_rng(0))
  assert out.shape == (28, 28, 1) and 0 <= out.min() and out.max() <= 1
  for name, op in images.RANDAUGMENT_OPS.items():
    assert op(small, 0.9, np.random.default_rng(0)).shape == small.shape, name


def test_mixup_cutmix_soft_labels():
  x = np.random.default_rng(0).random((8, 16, 16, 3)).astype(np.float32)
  y = np.arange(8) % 4
  for seed in range(6):  # both branches
    mixed, probs = images.mix_batch(x, y, 4, np.random.default_rng(seed))
    assert mixed.shape == x.shape and probs.shape == (8, 4)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert (probs[np.arange(8), y] >= probs[np.arange(8), y[::-1]] - 1 + 1e-6).all()


def test_random_erasing_replaces_a_rectangle():
  x = np.zeros((32, 32, 3), np.float32)
  out = images.random_erasing(x, np.random.default_rng(0), p=1.0)
  changed = np.any(out != 0, axis=-1)
  rows, cols = np.where(changed)
  assert changed.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
