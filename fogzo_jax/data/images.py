"""Image classification data: random-access sources and per-example transforms.

Sources (all random access, so a batch is a pure function of (seed, step) and a run resumes at
any step; see ``pipeline.py``):

- ``ArraySource``: uint8 arrays in memory (MNIST / Fashion-MNIST from ``mnist.py``);
- ``FolderSource``: an ImageFolder tree ``<root>/<split>/<class>/*.{jpg,JPEG,png}`` (ImageNet-1k
  or -100 as ``train/<wnid>/*.JPEG`` + ``val/<wnid>/*.JPEG``; CIFAR-10 from the shipped JPEG
  archives); classes are the sorted folder names, optionally restricted to a class list
  (``imagenet100_classes()``);
- ``TfdsSource``: ``tfds.data_source`` of a prepared tfds data set (``imagenet2012``), which needs
  no TensorFlow when prepared as array_record;
- ``load_cifar10``: CIFAR-10 decoded once into an ``ArraySource`` per split, from the JPEG
  archives as shipped (``cifar10_{train,test}_jpg.tar.gz``) or from their extracted trees (60,000
  32-px JPEGs decode in about 6 s; read per step from files they cost more than a small model's
  step).

Transforms (numpy + Pillow, on the host): evaluation resizes the shorter side to
⌈size/0.875⌉ and centre-crops ``size`` (ImageNet) or keeps small images as they are;
training augmentation per recipe (``AUGMENTATIONS``):

- "none": the evaluation transform;
- "crop_flip" (ResNet recipe): random-resized crop (scale 0.08–1, ratio 3/4–4/3) + horizontal
  flip; for images ≤ 64 px the CIFAR variant, 4-px zero-padded random crop + flip;
- "deit" (DeiT recipe): crop_flip + RandAugment(n=2, m=9) + random erasing (p = 0.25) per
  example, Mixup (α 0.8) / CutMix (α 1.0) per batch (``mix_batch``); label smoothing is the
  loss's (``config.label_smoothing``).

Normalisation: ImageNet mean/std for RGB (their averages for grey), or x/255 ("unit", the MNIST
MLP's input).
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from importlib import resources
from typing import Optional

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

AUGMENTATIONS = ("none", "crop_flip", "deit")
NORMALIZATIONS = ("imagenet", "unit")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_EXTENSIONS = (".jpg", ".jpeg", ".png")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")  # labels 0-9 in CIFAR-10's order (= the sorted names)
CIFAR10_ARCHIVES = {"train": "cifar10_train_jpg.tar.gz", "test": "cifar10_test_jpg.tar.gz"}


class ArraySource:
  """uint8 images [N, H, W] or [N, H, W, C] and int labels [N] in memory."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, name: str):
    self.images = images if images.ndim == 4 else images[..., None]
    self.labels = np.asarray(labels, np.int32)
    self.num_classes, self.name = num_classes, name

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return self.images[i], int(self.labels[i])


def imagenet100_classes() -> list[str]:
  """The 100 ImageNet wnids of the ImageNet-100 subset (CMC, Tian et al. 2020), shipped."""
  text = (resources.files("fogzo_jax.data") / "imagenet100.txt").read_text()
  return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class FolderSource:
  """``<root>/<split>/<class>/<image>``; labels = index of the class in ``classes``."""

  def __init__(self, root: str, split: str, classes: Optional[list[str]] = None):
    from fogzo_jax.data.mnist import DataError  # pylint: disable=g-import-not-at-top
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
      raise DataError(f"image folder {folder!r} does not exist: data_dir must hold "
                      f"{split}/<class>/*.jpg (ImageFolder layout)")
    present = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if classes is None:
      classes = present
    missing = sorted(set(classes) - set(present))
    if missing:
      raise DataError(f"{folder} lacks {len(missing)} of the {len(classes)} class folders "
                      f"(first: {missing[0]})")
    self.paths, labels = [], []
    for label, name in enumerate(classes):
      files = sorted(f for f in os.listdir(os.path.join(folder, name))
                     if f.lower().endswith(_EXTENSIONS))
      self.paths += [os.path.join(folder, name, f) for f in files]
      labels += [label] * len(files)
    if not self.paths:
      raise DataError(f"no images ({', '.join(_EXTENSIONS)}) under {folder}")
    self.labels = np.asarray(labels, np.int32)
    self.num_classes, self.name = len(classes), f"ImageFolder {folder}"

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, i):
    with Image.open(self.paths[i]) as im:
      return np.asarray(im.convert("RGB")), int(self.labels[i])


class TfdsSource:
  """A prepared tfds image data set, read with ``tfds.data_source`` (array_record, no TF)."""

  def __init__(self, name: str, split: str, data_dir: Optional[str] = None):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    from fogzo_jax.data.mnist import DataError  # pylint: disable=g-import-not-at-top
    try:
      self.source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
      info = tfds.builder(name, data_dir=data_dir).info
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(
          f"tensorflow-datasets has no prepared {name!r} ({type(e).__name__}: {e}). Prepare it "
          f"once: download the archives by hand (ImageNet needs a login: put ILSVRC2012_img_train"
          f".tar and ILSVRC2012_img_val.tar in <data_dir>/downloads/manual/), then run `tfds "
          f"build {name} --data_dir=<data_dir> --file_format=array_record` and pass "
          f"config.data_dir=<data_dir>; or use an ImageFolder tree with "
          f"config.data_source='folder'") from None
    self.num_classes, self.name = info.features["label"].num_classes, f"tfds {name}:{split}"

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    example = self.source[int(i)]
    return np.asarray(example["image"], np.uint8), int(example["label"])


def _decode(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert("RGB"))


def _stack(images: list, labels: list, where: str, name: str) -> ArraySource:
  from fogzo_jax.data.mnist import DataError  # pylint: disable=g-import-not-at-top
  if not images:
    raise DataError(f"{where} holds no CIFAR-10 images (<split>/<class>/*.jpg)")
  shapes = {im.shape for im in images}
  if shapes != {(32, 32, 3)}:
    raise DataError(f"{where}: CIFAR-10 images are 32x32 RGB; found shapes {sorted(shapes)[:3]}")
  return ArraySource(np.stack(images), np.asarray(labels, np.int32), len(CIFAR10_CLASSES), name)


def cifar10_archive(path: str, split: str) -> ArraySource:
  """Decodes a CIFAR-10 JPEG archive (a tar.gz of ``<split>/<class>/*.jpg``) into memory.

  Members are read in archive order and sorted by path, so the example order (and with it every
  batch of a seeded run) does not depend on how the archive was written. Raises ``DataError``
  naming the archive when it is unreadable or holds another class set.
  """
  from fogzo_jax.data.mnist import DataError  # pylint: disable=g-import-not-at-top
  items = []
  try:
    with tarfile.open(path) as tar:
      for member in tar:
        parts = member.name.split("/")
        if not member.isfile() or len(parts) < 3 or parts[-3] != split or \
            not parts[-1].lower().endswith(_EXTENSIONS):
          continue
        if parts[-2] not in CIFAR10_CLASSES:
          raise DataError(f"{path}: {member.name} is in class folder {parts[-2]!r}, not one of "
                          f"CIFAR-10's {', '.join(CIFAR10_CLASSES)}")
        items.append((member.name, CIFAR10_CLASSES.index(parts[-2]),
                      _decode(tar.extractfile(member).read())))
  except (OSError, EOFError, zlib.error, tarfile.TarError) as e:
    raise DataError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
  items.sort(key=lambda item: item[0])
  return _stack([im for _, _, im in items], [label for _, label, _ in items], path,
                f"CIFAR-10 {split} ({os.path.basename(path)})")


def load_cifar10(data_dir: str) -> tuple[ArraySource, ArraySource]:
  """(train, test) CIFAR-10 in memory from ``data_dir``: the two JPEG archives as shipped, or
  their extracted ``train/<class>/`` and ``test/<class>/`` trees."""
  from fogzo_jax.data.mnist import DataError  # pylint: disable=g-import-not-at-top
  archives = {k: os.path.join(data_dir, f) for k, f in CIFAR10_ARCHIVES.items()}
  if all(os.path.isfile(p) for p in archives.values()):
    return cifar10_archive(archives["train"], "train"), cifar10_archive(archives["test"], "test")
  if not all(os.path.isdir(os.path.join(data_dir, k)) for k in CIFAR10_ARCHIVES):
    raise DataError(f"{data_dir!r} holds neither {' and '.join(CIFAR10_ARCHIVES.values())} nor "
                    f"their extracted train/ and test/ trees: config.data.data_dir for cifar10 "
                    f"is the folder with them (the shared data's images/cifar10_jpeg)")
  out = []
  for split in CIFAR10_ARCHIVES:
    folder = FolderSource(data_dir, split, list(CIFAR10_CLASSES))
    images = []
    for p in folder.paths:
      try:
        with open(p, "rb") as f:
          images.append(_decode(f.read()))
      except OSError as e:  # unreadable, or not an image (PIL's UnidentifiedImageError)
        raise DataError(f"{p} cannot be read ({type(e).__name__}: {e})") from None
    out.append(_stack(images, folder.labels, folder.name, f"CIFAR-10 {split} ({folder.name})"))
  return out[0], out[1]


# --------------------------------------------------------------------------- transforms


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  if image.shape[:2] == size:
    return image
  pil = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
  out = np.asarray(pil.resize((size[1], size[0]), Image.BICUBIC))
  return out if out.ndim == 3 else out[..., None]


def eval_transform(image: np.ndarray, size: int) -> np.ndarray:
  """Resize (shorter side ⌈size/0.875⌉) + centre crop for large images; resize for small."""
  image = image if image.ndim == 3 else image[..., None]
  h, w = image.shape[:2]
  if max(h, w) <= 64 or size <= 64:
    return _resize(image, (size, size))
  short = int(np.ceil(size / 0.875))
  scale = short / min(h, w)
  image = _resize(image, (max(short, round(h * scale)), max(short, round(w * scale))))
  top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
  return image[top:top + size, left:left + size]


def random_resized_crop(image, size, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  h, w = image.shape[:2]
  for _ in range(10):
    area = h * w * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    ch, cw = int(round(np.sqrt(area / aspect))), int(round(np.sqrt(area * aspect)))
    if 0 < ch <= h and 0 < cw <= w:
      top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
      return _resize(image[top:top + ch, left:left + cw], (size, size))
  return eval_transform(image, size)


def pad_crop(image, size, rng, pad=4):
  image = _resize(image, (size, size))
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  top, left = rng.integers(0, 2 * pad + 1, size=2)
  return padded[top:top + size, left:left + size]


def _pil_op(fn):
  def op(image, magnitude, rng):
    grey = image.shape[-1] == 1
    pil = Image.fromarray(image.squeeze(-1) if grey else image)
    out = np.asarray(fn(pil, magnitude, rng))
    return out[..., None] if out.ndim == 2 else out
  return op


def _signed(m, rng):
  return m if rng.random() < 0.5 else -m


_FILL = 128
RANDAUGMENT_OPS = {  # name: op(image, magnitude in [0, 1], rng), the RandAugment op set
    "identity": lambda im, m, rng: im,
    "autocontrast": _pil_op(lambda p, m, r: ImageOps.autocontrast(p)),
    "equalize": _pil_op(lambda p, m, r: ImageOps.equalize(p)),
    "rotate": _pil_op(lambda p, m, r: p.rotate(_signed(30 * m, r), fillcolor=_FILL)),
    "solarize": _pil_op(lambda p, m, r: ImageOps.solarize(p, int(256 - 256 * m))),
    "posterize": _pil_op(lambda p, m, r: ImageOps.posterize(p, max(1, int(8 - 4 * m)))),
    "color": _pil_op(lambda p, m, r: ImageEnhance.Color(p).enhance(1 + _signed(0.9 * m, r))),
    "contrast": _pil_op(lambda p, m, r: ImageEnhance.Contrast(p).enhance(1 + _signed(0.9 * m, r))),
    "brightness": _pil_op(
        lambda p, m, r: ImageEnhance.Brightness(p).enhance(1 + _signed(0.9 * m, r))),
    "sharpness": _pil_op(
        lambda p, m, r: ImageEnhance.Sharpness(p).enhance(1 + _signed(0.9 * m, r))),
    "shear_x": _pil_op(lambda p, m, r: p.transform(
        p.size, Image.AFFINE, (1, _signed(0.3 * m, r), 0, 0, 1, 0), fillcolor=_FILL)),
    "shear_y": _pil_op(lambda p, m, r: p.transform(
        p.size, Image.AFFINE, (1, 0, 0, _signed(0.3 * m, r), 1, 0), fillcolor=_FILL)),
    "translate_x": _pil_op(lambda p, m, r: p.transform(
        p.size, Image.AFFINE, (1, 0, _signed(0.45 * m * p.size[0], r), 0, 1, 0), fillcolor=_FILL)),
    "translate_y": _pil_op(lambda p, m, r: p.transform(
        p.size, Image.AFFINE, (1, 0, 0, 0, 1, _signed(0.45 * m * p.size[1], r)), fillcolor=_FILL)),
}


def rand_augment(image, rng, num_ops: int = 2, magnitude: int = 9):
  """RandAugment (Cubuk et al. 2020): ``num_ops`` ops drawn uniformly, magnitude m/10."""
  names = list(RANDAUGMENT_OPS)
  for k in rng.integers(0, len(names), size=num_ops):
    image = RANDAUGMENT_OPS[names[k]](image, magnitude / 10, rng)
  return image


def random_erasing(x: np.ndarray, rng, p: float = 0.25, scale=(0.02, 1 / 3), ratio=(0.3, 3.3)):
  """Erases a random rectangle of the normalised image with N(0, 1) noise (DeiT: p = 0.25)."""
  if rng.random() >= p:
    return x
  h, w, c = x.shape
  for _ in range(10):
    area = h * w * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    eh, ew = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
    if eh < h and ew < w:
      top, left = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
      x = x.copy()
      x[top:top + eh, left:left + ew] = rng.standard_normal((eh, ew, c)).astype(x.dtype)
      return x
  return x


def normalize(image: np.ndarray, how: str) -> np.ndarray:
  x = image.astype(np.float32) / 255.0
  if how == "unit":
    return x
  mean, std = (IMAGENET_MEAN, IMAGENET_STD) if x.shape[-1] == 3 else (
      IMAGENET_MEAN.mean(keepdims=True), IMAGENET_STD.mean(keepdims=True))
  return (x - mean) / std


def train_transform(image: np.ndarray, size: int, augment: str, norm: str, rng) -> np.ndarray:
  """One training example: uint8 [H, W, C] → float32 [size, size, C]."""
  image = image if image.ndim == 3 else image[..., None]
  if augment == "none":
    return normalize(eval_transform(image, size), norm)
  small = max(image.shape[:2]) <= 64
  image = pad_crop(image, size, rng) if small else random_resized_crop(image, size, rng)
  if rng.random() < 0.5:
    image = image[:, ::-1]
  if augment == "deit":
    image = rand_augment(np.ascontiguousarray(image), rng)
    return random_erasing(normalize(image, norm), rng)
  return normalize(image, norm)


def mix_batch(images: np.ndarray, labels: np.ndarray, num_classes: int, rng,
              mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0):
  """DeiT's batch mixing: Mixup or CutMix (50/50), pairing each example with the reversed batch.

  Returns images [B, H, W, C] and soft labels [B, num_classes].
  """
  onehot = np.eye(num_classes, dtype=np.float32)[labels]
  if rng.random() < 0.5:
    lam = rng.beta(mixup_alpha, mixup_alpha)
    images = lam * images + (1 - lam) * images[::-1]
  else:
    lam = rng.beta(cutmix_alpha, cutmix_alpha)
    h, w = images.shape[1:3]
    ch, cw = int(h * np.sqrt(1 - lam)), int(w * np.sqrt(1 - lam))
    cy, cx = rng.integers(0, h), rng.integers(0, w)
    t, b = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
    l, r = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
    images = images.copy()
    images[:, t:b, l:r] = images[::-1, t:b, l:r]
    lam = 1 - (b - t) * (r - l) / (h * w)
  return images.astype(np.float32), (lam * onehot + (1 - lam) * onehot[::-1]).astype(np.float32)
