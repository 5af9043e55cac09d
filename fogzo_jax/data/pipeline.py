"""Input pipelines on grain: ``make_pipeline(**config.data, …)`` → ``Pipeline``.

Every source here is random access (in-memory arrays, an ImageFolder tree, a tfds
``data_source``, packed text rows), so the pipeline is a ``grain.MapDataset``:

  source → shuffle(seed) → repeat() → [random_map(per-example augmentation)]
         → batch(B / processes) → [process::processes] → [random_map(Mixup/CutMix)] → map(to arrays)

grain reshuffles every epoch (its shuffle is epoch-aware), draws each example's augmentation
from (seed, index), and batch s of this process is element s of ``Pipeline.train``: the global
batch of step s is a pure function of (seed, s), each process builds only its contiguous rows of
it, and the iterator's state (its position) is checkpointed with the train state (grain's orbax
handler), so a resumed run sees exactly the batches it would have seen. In-memory data without
augmentation and packed text take a faster path to the same law (``_index_batches``): element s
is the index array of batch s, sliced from a numpy permutation of the epoch, and the batch is
gathered with one vectorised slice (grain's per-element shuffle + batch costs ~15 µs an element,
11 ms for an MNIST batch of 512 on our CPU: more than the step it feeds). Evaluation sets are
padded to whole batches with weight-0 rows (one compiled eval step).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os

import grain
import numpy as np

from fogzo_jax import checks
from fogzo_jax.data import images as images_lib
from fogzo_jax.data import mnist as mnist_lib
from fogzo_jax.data import text as text_lib
from fogzo_jax.data.mnist import DataError

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "imagenet100", "imagenet2012",
                  "imagefolder")
TEXT_DATASETS = ("tiny_shakespeare", "text", "c4")
DATASETS = IMAGE_DATASETS + TEXT_DATASETS
SOURCES = mnist_lib.SOURCES + ("folder",)
NATIVE_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32}
SHIPPED_SHAKESPEARE = text_lib.SHIPPED_SHAKESPEARE


@dataclasses.dataclass
class Pipeline:
  """What the train loop needs from a data set.

  Attributes:
    task: "image" or "lm".
    train: ``grain.MapDataset`` whose element s is this process's rows of the global batch of
      step s (a dict of numpy arrays); unbounded.
    steps_per_epoch: global batches per pass over the training set.
    eval_sets: name → ``grain.MapDataset`` of this process's rows of padded eval batches (the
      padding rows have ``weights`` 0).
    model_args: what the model takes from the data: ``num_classes`` or ``vocab_size``.
    info: source description, tokens per global batch (LM), image size.
    skipped: files (or examples) that could not be read and were skipped so far.
  """
  task: str
  train: grain.MapDataset
  steps_per_epoch: int
  eval_sets: dict
  model_args: dict
  info: dict
  skipped: set = dataclasses.field(default_factory=set)


def check_args(name: str = "mnist", batch_size: int = 512, eval_batch_size: int = 10000,
               data_dir: str = "", source: str = "auto", image_size: int = 0,
               augment: str = "none", mixup: bool = False, normalize: str = "unit",
               eval_train: bool = True, seq_len: int = 256, tokenizer: str = "byte",
               tokenizer_path: str = "", tfds_name: str = "", eval_tokens: int = 2_000_000
               ) -> None:
  """Checks ``config.data`` (each message starts with the field)."""
  checks.choice("name", name, DATASETS)
  checks.number("batch_size", batch_size, int, 1)
  checks.number("eval_batch_size", eval_batch_size, int, 1)
  checks.string("data_dir", data_dir, "(a path, or '' for none)")
  checks.choice("source", source, SOURCES)
  checks.number("image_size", image_size, int, 0)
  checks.choice("augment", augment, images_lib.AUGMENTATIONS)
  checks.boolean("mixup", mixup)
  checks.choice("normalize", normalize, images_lib.NORMALIZATIONS)
  checks.boolean("eval_train", eval_train)
  checks.number("seq_len", seq_len, int, 2)
  checks.choice("tokenizer", tokenizer, text_lib.TOKENIZERS)
  checks.string("tokenizer_path", tokenizer_path, "(a SentencePiece model file, or '')")
  checks.string("tfds_name", tfds_name, "(a tensorflow-datasets name, or '' for the default)")
  checks.number("eval_tokens", eval_tokens, int, 1)
  if mixup and augment != "deit":
    raise ValueError(f"mixup needs augment='deit'; got augment {augment!r}")
  if tokenizer == "sentencepiece" and not tokenizer_path:
    raise ValueError("tokenizer_path must name a SentencePiece model file when "
                     "tokenizer='sentencepiece'")
  if name == "text" and not data_dir:
    raise ValueError("data_dir must be a .txt or .jsonl[.gz] file for name='text'")


def make_pipeline(name: str = "mnist", batch_size: int = 512, eval_batch_size: int = 10000,
                  *, seed: int, process_index: int = 0, process_count: int = 1,
                  total_steps: int = 0, **options) -> Pipeline:
  """The pipeline of ``config.data`` (``**options``: its other fields, see ``check_args``).

  ``total_steps`` sizes the token cache of tfds text. Raises ``DataError`` (naming the file or
  folder) when the data cannot be found or read.
  """
  check_args(name, batch_size, eval_batch_size, **options)
  for what, size in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
    if size % process_count:
      raise DataError(f"{what} {size} is not divisible by the {process_count} processes")
  shard = dict(process_index=process_index, process_count=process_count)
  if name in TEXT_DATASETS:
    return _text_pipeline(name, batch_size, eval_batch_size, seed, shard, total_steps, **options)
  return _image_pipeline(name, batch_size, eval_batch_size, seed, shard, **options)


def _batches(ds: grain.MapDataset, batch_size: int, process_index: int,
             process_count: int) -> grain.MapDataset:
  """This process's contiguous rows of each global batch: global batch s is elements
  [s·B, (s+1)·B) of ``ds``, process p takes rows [p·B/P, (p+1)·B/P) of it."""
  per = batch_size // process_count
  return ds.batch(per, drop_remainder=True)[process_index::process_count]


def _index_batches(num_examples: int, batch_size: int, seed: int, process_index: int,
                   process_count: int) -> grain.MapDataset:
  """Element s: this process's rows of global batch s, as indices into ``num_examples``.

  Epoch e is the permutation of range(num_examples) seeded by (seed, e); global batch s is its
  slice [p·B, (p+1)·B) with (e, p) = divmod(s, steps per epoch) (an epoch's remainder is
  dropped); process i takes rows [i·B/P, (i+1)·B/P) of it.
  """
  steps, per = num_examples // batch_size, batch_size // process_count

  @functools.lru_cache(maxsize=4)  # grain's prefetch threads may straddle two epochs
  def permutation(epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_examples)

  def rows(s, _):
    epoch, position = divmod(s, steps)
    start = position * batch_size + process_index * per
    return permutation(epoch)[start:start + per]
  return grain.MapDataset.range(steps).repeat().map_with_index(rows)


def _shuffled(ds: grain.MapDataset, seed: int) -> grain.MapDataset:
  return ds.shuffle(seed=seed).repeat()


def _eval_set(num_examples: int, eval_batch_size: int, make, shard: dict) -> grain.MapDataset:
  """Padded eval batches: ``make(indices, real)`` builds a batch; padding rows get weight 0."""
  if num_examples == 0:
    raise DataError("an evaluation set has no examples")
  per = eval_batch_size // shard["process_count"]
  ds = grain.MapDataset.range(math.ceil(num_examples / eval_batch_size)).map(
      lambda b: b * eval_batch_size + shard["process_index"] * per + np.arange(per))

  def build(idx):
    real = idx < num_examples
    batch = make(np.where(real, idx, 0))
    weights = batch.get("weights", np.ones(len(idx), np.float32))
    batch["weights"] = weights * real.reshape((-1,) + (1,) * (weights.ndim - 1))
    return batch
  return ds.map(build)


# ------------------------------------------------------------------------------- images


def _image_sources(name, data_dir, source):
  """(train source, eval sources dict, description)."""
  data_dir = data_dir or None
  if name in ("mnist", "fashion_mnist"):
    data = mnist_lib.load_image_dataset(name, data_dir, source if source != "folder" else "idx")
    return (images_lib.ArraySource(data.train_images, data.train_labels, 10, name),
            {"test": images_lib.ArraySource(data.test_images, data.test_labels, 10, name),
             "train": images_lib.ArraySource(data.train_images, data.train_labels, 10, name)},
            data.source)
  if name == "imagenet2012" or (name == "imagenet100" and source == "tfds"):
    if name == "imagenet100":
      raise DataError("imagenet100 is read from an ImageFolder tree (data_dir with "
                      "train/<wnid>/ and val/<wnid>/); tfds has no such subset")
    train = images_lib.TfdsSource("imagenet2012", "train", data_dir)
    return train, {"test": images_lib.TfdsSource("imagenet2012", "validation", data_dir)}, \
        train.name
  if name == "cifar10":
    if not data_dir:
      raise DataError("dataset 'cifar10' needs config.data.data_dir: the folder with "
                      "cifar10_train_jpg.tar.gz and cifar10_test_jpg.tar.gz (the shared data's "
                      "images/cifar10_jpeg) or their extracted train/ and test/ trees")
    train, test = images_lib.load_cifar10(data_dir)
    return train, {"test": test, "train": train}, f"CIFAR-10 in memory from {data_dir}"
  if not data_dir:
    raise DataError(f"dataset {name!r} needs config.data.data_dir: a folder with train/<class>/ "
                    f"and {'val' if name.startswith('imagenet') else 'test'}/<class>/ images")
  classes = images_lib.imagenet100_classes() if name == "imagenet100" else None
  eval_split = next((s for s in ("val", "test", "validation")
                     if os.path.isdir(os.path.join(data_dir, s))), "val")
  train = images_lib.FolderSource(data_dir, "train", classes)
  return train, {"test": images_lib.FolderSource(data_dir, eval_split, classes)}, train.name


def _image_pipeline(name, batch_size, eval_batch_size, seed, shard, *, data_dir="",
                    source="auto", image_size=0, augment="none", mixup=False, normalize="unit",
                    eval_train=True, **_) -> Pipeline:
  train, evals, description = _image_sources(name, data_dir, source)
  skipped = set()
  if len(train) == 0:
    raise DataError(f"{description}: the training split has no examples")
  size = image_size or NATIVE_SIZE.get(name, 224)
  first = np.asarray(train[0][0])
  if first.ndim not in (2, 3) or first.shape[0] < 8:
    raise DataError(f"images of {description} have shape {first.shape}; expected [H, W(, C)]")
  steps_per_epoch = len(train) // batch_size
  if steps_per_epoch == 0:
    raise DataError(f"batch_size {batch_size} exceeds the {len(train)} training images of "
                    f"{description}")

  def in_memory(src):  # arrays already at the model's size: gather a whole batch at once
    return isinstance(src, images_lib.ArraySource) and src.images.shape[1] == size

  def gather(src):
    def make(idx):
      x = images_lib.normalize(src.images[idx], normalize)
      return {"image": x.astype(np.float32), "label": src.labels[idx]}
    return make

  if in_memory(train) and augment == "none":
    ds = _index_batches(len(train), batch_size, seed, **shard).map(gather(train))
  else:
    def example(item, rng):
      image, label = item
      x = images_lib.train_transform(np.asarray(image), size, augment, normalize, rng)
      return {"image": x.astype(np.float32), "label": np.int32(label)}
    ds = _shuffled(grain.MapDataset.source(_Checked(train, description, skipped)), seed)
    ds = _batches(ds.random_map(example, seed=seed), batch_size, **shard)
    if mixup:
      def mix(batch, rng):
        image, probs = images_lib.mix_batch(batch["image"], batch["label"], train.num_classes,
                                            rng)
        return {**batch, "image": image, "label_probs": probs}
      ds = ds.random_map(mix, seed=seed + 1)

  def eval_set(src):
    if in_memory(src):
      return _eval_set(len(src), eval_batch_size, gather(src), shard)
    checked = _Checked(src, description, skipped)

    def make(idx):
      items = [checked.get(i) for i in idx]
      x = np.stack([images_lib.normalize(images_lib.eval_transform(np.asarray(im), size),
                                         normalize) for (im, _), _ in items])
      return {"image": x.astype(np.float32),
              "label": np.asarray([label for (_, label), _ in items], np.int32),
              "weights": np.asarray([ok for _, ok in items], np.float32)}
    return _eval_set(len(src), eval_batch_size, make, shard)

  # Small in-memory data: also evaluate on the training set (the paper's MNIST curves).
  sets = {k: eval_set(v) for k, v in evals.items()
          if k == "test" or (eval_train and len(v) <= 100_000)}
  return Pipeline("image", ds, steps_per_epoch, sets, {"num_classes": train.num_classes},
                  {"source": description, "image_size": size}, skipped)


class _Checked:
  """A source that skips unreadable examples (a truncated or non-image file).

  ``get(i)`` returns (example, True), or, when example i cannot be read, the next readable
  example and False; every skipped file goes into ``skipped`` (shared with the ``Pipeline``,
  reported by the loop and counted in summary.json). Training uses the substitute, so batches
  keep their size and a resumed run sees the same batches; evaluation gives it weight 0.
  """

  def __init__(self, source, description: str, skipped: set):
    self.source, self.description, self.skipped = source, description, skipped

  def __len__(self):
    return len(self.source)

  def get(self, i):
    for k in range(min(len(self.source), 1000)):
      j = (int(i) + k) % len(self.source)
      try:
        return self.source[j], k == 0
      except DataError:
        raise
      except Exception as e:  # pylint: disable=broad-except  # an unreadable example: skip it
        paths = getattr(self.source, "paths", None)
        what = paths[j] if paths is not None else f"example {j} of {self.description}"
        if what not in self.skipped:
          logging.warning("skipping unreadable %s: %s: %s", what, type(e).__name__, e)
        self.skipped.add(what)
    raise DataError(f"{self.description}: no readable example near index {i} (1000 tried)")

  def __getitem__(self, i):
    return self.get(i)[0]


# --------------------------------------------------------------------------------- text


def _text_pipeline(name, batch_size, eval_batch_size, seed, shard, total_steps, *, data_dir="",
                   seq_len=256, tokenizer="byte", tokenizer_path="", tfds_name="",
                   eval_tokens=2_000_000, **_) -> Pipeline:
  tok = text_lib.get_tokenizer(tokenizer, tokenizer_path)
  if name in ("tiny_shakespeare", "text"):
    path = data_dir or SHIPPED_SHAKESPEARE
    docs = text_lib.split_documents(text_lib.read_documents(path))
    description = f"Tiny Shakespeare ({path})" if name == "tiny_shakespeare" else path
    packed = {split: text_lib.pack((tok.encode(d) for d in ds), seq_len, tok.eos_id)
              for split, ds in docs.items()}
  else:
    packed, description = text_lib.tfds_token_rows(
        tfds_name or "c4/en", data_dir, tok, tokenizer, tokenizer_path, seq_len,
        {"train": (total_steps or 10_000) * batch_size * (seq_len + 1),
         "validation": eval_tokens}, process_index=shard["process_index"])
  train = packed["train"]
  steps_per_epoch = len(train["tokens"]) // batch_size
  if steps_per_epoch == 0:
    raise DataError(f"batch_size {batch_size} exceeds the {len(train['tokens'])} training "
                    f"sequences of {seq_len} tokens in {description}")

  def rows(split):
    def make(idx):
      return text_lib.lm_example(np.asarray(split["tokens"][idx]),
                                 text_lib.row_segments(np.asarray(split["segment_ids"][idx])))
    return make

  ds = _index_batches(len(train["tokens"]), batch_size, seed, **shard).map(rows(train))
  val = packed["validation"]
  return Pipeline("lm", ds, steps_per_epoch,
                  {"validation": _eval_set(len(val["tokens"]), eval_batch_size, rows(val), shard)},
                  {"vocab_size": tok.vocab_size},
                  {"source": description, "tokens_per_batch": batch_size * seq_len,
                   "train_sequences": len(train["tokens"]),
                   "validation_sequences": len(val["tokens"])})
