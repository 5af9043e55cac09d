"""Host-side input pipeline: deterministic, resumable, sharded per process, prefetched.

Every data set here is a random-access source, so the global batch of step s is a pure function
of (seed, s): epoch e = s // steps_per_epoch uses the permutation ``default_rng([seed, e])`` of
the examples and takes rows (s mod steps_per_epoch)·B … +B of it; per-example augmentation
draws from ``default_rng([seed, e, example index])``. The step in the checkpoint is therefore
the iterator position: a resumed run sees exactly the batches it would have seen. Each process
builds only its own contiguous slice of the global batch (``jax.process_index()``), and a
background thread prepares the next batches while the device runs (``prefetch``).

Why not grain or tf.data: this is the part of grain's MapDataset we need (index sampler +
per-index transforms + prefetch) in ~100 lines without TensorFlow; the sources are tfds
``data_source``s or plain arrays, so moving to ``grain.MapDataset.source(...)`` later is direct.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import queue
import threading
from typing import Callable, Iterator, Optional

import numpy as np

from fogzo_jax.data import images as images_lib
from fogzo_jax.data import mnist as mnist_lib
from fogzo_jax.data import text as text_lib
from fogzo_jax.data.mnist import DataError

IMAGE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "imagenet100", "imagenet2012",
                  "imagefolder")
TEXT_DATASETS = ("tiny_shakespeare", "text", "c4")
DATASETS = IMAGE_DATASETS + TEXT_DATASETS
NATIVE_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32}
SHIPPED_SHAKESPEARE = text_lib.SHIPPED_SHAKESPEARE


@dataclasses.dataclass
class Pipeline:
  """What the train loop needs from a data set.

  Attributes:
    task: "image" or "lm".
    batch: step → dict of numpy arrays, this process's rows of that step's global batch.
    steps_per_epoch: full global batches per pass over the training set.
    eval_sets: name → callable returning an iterator of (batch dict, number of real rows).
    sample: one batch of the model's input (for ``model.init``).
    info: num_classes / vocab_size, source description, tokens per global batch.
  """
  task: str
  batch: Callable[[int], dict]
  steps_per_epoch: int
  eval_sets: dict
  sample: np.ndarray
  info: dict


@functools.lru_cache(maxsize=4)
def epoch_indices(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of one epoch (computed once per epoch, not per batch; read-only)."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  order.flags.writeable = False
  return order


def padded_eval_batches(num_examples: int, batch_size: int, make: Callable[[np.ndarray], dict],
                        process_index: int = 0, process_count: int = 1):
  """Yields (batch, real rows): this process's rows of consecutive eval batches, padded to a fixed
  shape with zero rows that get weight 0 (``weights`` per row, added when ``make`` has none)."""
  per = batch_size // process_count
  for start in range(0, num_examples, batch_size):
    lo = min(start + process_index * per, num_examples)
    idx = np.arange(lo, min(lo + per, start + batch_size, num_examples))
    real = len(idx)
    example = make(idx if real else np.zeros(1, np.int64))  # empty share: one dummy row
    example.setdefault("weights", np.ones(len(example["image" if "image" in example else
                                                         "inputs"]), np.float32))
    yield {k: np.concatenate([v[:real], np.zeros((per - real, *v.shape[1:]), v.dtype)])
           for k, v in example.items()}, real


def _rows(step, batch_size, steps_per_epoch, num_examples, seed, process_index, process_count):
  """(epoch, example indices of this process's rows of the global batch of ``step``)."""
  epoch, pos = divmod(step, steps_per_epoch)
  per = batch_size // process_count
  start = pos * batch_size + process_index * per
  return epoch, epoch_indices(num_examples, seed, epoch)[start:start + per]


# ------------------------------------------------------------------------------- images


def _image_sources(config):
  """(train source, eval sources dict, description)."""
  name, data_dir = config.dataset, config.data_dir or None
  if name in ("mnist", "fashion_mnist"):
    data = mnist_lib.load_image_dataset(name, data_dir, config.data_source)
    return (images_lib.ArraySource(data.train_images, data.train_labels, 10, name),
            {"test": images_lib.ArraySource(data.test_images, data.test_labels, 10, name),
             "train": images_lib.ArraySource(data.train_images, data.train_labels, 10, name)},
            data.source)
  if name == "imagenet2012" or (name == "imagenet100" and config.data_source == "tfds"):
    if name == "imagenet100":
      raise DataError("imagenet100 is read from an ImageFolder tree (config.data_dir with "
                      "train/<wnid>/ and val/<wnid>/); tfds has no such subset")
    train = images_lib.TfdsSource("imagenet2012", "train", data_dir)
    return train, {"test": images_lib.TfdsSource("imagenet2012", "validation", data_dir)}, \
        train.name
  if not data_dir:
    raise DataError(f"dataset {name!r} needs config.data_dir: a folder with train/<class>/ and "
                    f"{'val' if name.startswith('imagenet') else 'test'}/<class>/ images" + (
                        " (extract cifar10_train_jpg.tar.gz and cifar10_test_jpg.tar.gz from "
                        "the shared data there)" if name == "cifar10" else ""))
  classes = images_lib.imagenet100_classes() if name == "imagenet100" else None
  eval_split = next((s for s in ("val", "test", "validation")
                     if os.path.isdir(os.path.join(data_dir, s))), "val")
  train = images_lib.FolderSource(data_dir, "train", classes)
  return train, {"test": images_lib.FolderSource(data_dir, eval_split, classes)}, train.name


def image_pipeline(config, process_index: int = 0, process_count: int = 1) -> Pipeline:
  train, evals, source = _image_sources(config)
  size = config.image_size or NATIVE_SIZE.get(config.dataset, 224)
  first = np.asarray(train[0][0])
  if first.shape[0] < 8:
    raise DataError(f"images of {config.dataset} are {first.shape}; expected [H, W(, C)]")
  steps_per_epoch = len(train) // config.batch_size
  if steps_per_epoch == 0:
    raise DataError(f"config.batch_size {config.batch_size} exceeds the {len(train)} training "
                    "images")
  pool = concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)))
  fast = isinstance(train, images_lib.ArraySource) and config.augment == "none" and \
      first.shape[0] == size

  def batch(step):
    epoch, idx = _rows(step, config.batch_size, steps_per_epoch, len(train), config.seed,
                       process_index, process_count)
    if fast:  # in-memory, no augmentation: one vectorised slice
      x = images_lib.normalize(train.images[idx], config.normalize)
      y = train.labels[idx]
    else:
      def one(i):
        image, label = train[i]
        rng = np.random.default_rng([config.seed, epoch, int(i)])
        return images_lib.train_transform(np.asarray(image), size, config.augment,
                                          config.normalize, rng), label
      x, y = zip(*pool.map(one, idx))
      x, y = np.stack(x), np.asarray(y, np.int32)
    out = {"image": x.astype(np.float32), "label": y}
    if config.augment == "deit" and config.mixup:
      out["image"], out["label_probs"] = images_lib.mix_batch(
          out["image"], y, train.num_classes,
          np.random.default_rng([config.seed, epoch, step, process_index]))
    return out

  def eval_set(src):
    def make(idx):
      if isinstance(src, images_lib.ArraySource) and src.images.shape[1] == size:
        x = images_lib.normalize(src.images[idx], config.normalize)
        return {"image": x.astype(np.float32), "label": src.labels[idx]}
      items = list(pool.map(lambda i: src[i], idx))
      x = np.stack([images_lib.normalize(images_lib.eval_transform(np.asarray(im), size),
                                         config.normalize) for im, _ in items])
      return {"image": x.astype(np.float32), "label": np.asarray([l for _, l in items], np.int32)}
    return lambda: padded_eval_batches(len(src), config.eval_batch_size, make, process_index,
                                       process_count)

  # Small in-memory data: also evaluate on the training set (the paper's MNIST curves).
  sets = {k: eval_set(v) for k, v in evals.items()
          if k == "test" or (config.eval_train and len(v) <= 100_000)}
  channels = first.shape[-1] if first.ndim == 3 else 1
  return Pipeline("image", batch, steps_per_epoch, sets,
                  np.zeros((1, size, size, channels), np.float32),
                  {"num_classes": train.num_classes, "source": source, "image_size": size})


# --------------------------------------------------------------------------------- text


def _packed_splits(config, tokenizer, total_steps: int) -> tuple[dict, str]:
  """{"train", "validation"} → rows {"tokens", "segment_ids"} [N, seq_len + 1]."""
  if config.dataset in ("tiny_shakespeare", "text"):
    if config.dataset == "text" and not config.data_dir:
      raise DataError("dataset 'text' needs config.data_dir: a .txt or .jsonl[.gz] file")
    path = config.data_dir or SHIPPED_SHAKESPEARE
    docs = text_lib.split_documents(text_lib.read_documents(path))
    source = f"Tiny Shakespeare ({path})" if config.dataset == "tiny_shakespeare" else path
    return {split: text_lib.pack((tokenizer.encode(d) for d in ds), config.seq_len,
                                 tokenizer.eos_id) for split, ds in docs.items()}, source
  # tfds (C4): stream documents once into a token cache on disk, then read it memory-mapped.
  name = config.tfds_name or "c4/en"
  cache_dir = os.path.join(config.data_dir or os.path.expanduser("~/tensorflow_datasets"),
                           "fogzo_token_cache")
  needed = {"train": total_steps * config.batch_size * (config.seq_len + 1),
            "validation": config.eval_tokens}
  out = {}
  for split, tfds_split in (("train", "train"), ("validation", "validation")):
    stem = os.path.join(cache_dir, f"{name.replace('/', '_')}_{config.tokenizer}_"
                        f"{os.path.basename(config.tokenizer_path) or 'bytes'}_{tfds_split}")
    cache = text_lib.TokenCache(stem)
    if not cache.done:
      cache.write(text_lib.tfds_documents(name, tfds_split, config.data_dir or None), tokenizer,
                  needed[split])
    rows = cache.rows(config.seq_len)
    out[split] = rows
  return out, f"tfds {name} (token cache {cache_dir})"


def text_pipeline(config, process_index: int = 0, process_count: int = 1,
                  total_steps: int = 0) -> Pipeline:
  tokenizer = text_lib.get_tokenizer(config.tokenizer, config.tokenizer_path)
  packed, source = _packed_splits(config, tokenizer, total_steps or 10_000)
  train = packed["train"]
  steps_per_epoch = len(train["tokens"]) // config.batch_size
  if steps_per_epoch == 0:
    raise DataError(f"config.batch_size {config.batch_size} exceeds the "
                    f"{len(train['tokens'])} training sequences of {config.seq_len} tokens")

  def example(rows, idx):
    return text_lib.lm_example(np.asarray(rows["tokens"][idx]),
                               text_lib.row_segments(np.asarray(rows["segment_ids"][idx])))

  def batch(step):
    _, idx = _rows(step, config.batch_size, steps_per_epoch, len(train["tokens"]), config.seed,
                   process_index, process_count)
    return example(train, idx)

  def eval_set(rows):
    return lambda: padded_eval_batches(len(rows["tokens"]), config.eval_batch_size,
                                       lambda idx: example(rows, idx), process_index,
                                       process_count)

  return Pipeline("lm", batch, steps_per_epoch, {"validation": eval_set(packed["validation"])},
                  np.zeros((1, config.seq_len), np.int32),
                  {"vocab_size": tokenizer.vocab_size, "source": source,
                   "tokens_per_batch": config.batch_size * config.seq_len,
                   "train_sequences": len(train["tokens"]),
                   "validation_sequences": len(packed["validation"]["tokens"])})


def make_pipeline(config, process_index: int = 0, process_count: int = 1,
                  total_steps: int = 0) -> Pipeline:
  """The pipeline of ``config.dataset``; ``total_steps`` sizes the token cache of tfds text."""
  if config.dataset in TEXT_DATASETS:
    return text_pipeline(config, process_index, process_count, total_steps)
  return image_pipeline(config, process_index, process_count)


def prefetch(batch_fn: Callable[[int], dict], start: int, stop: int,
             size: int = 2) -> Iterator[tuple[int, dict]]:
  """Yields (step, batch_fn(step)) for start ≤ step < stop, computed ``size`` ahead in a thread."""
  q: queue.Queue = queue.Queue(maxsize=size)
  done = threading.Event()

  def work():
    try:
      for step in range(start, stop):
        if done.is_set():
          return
        q.put((step, batch_fn(step)))
    except BaseException as e:  # pylint: disable=broad-except  # re-raised in the consumer
      q.put(e)
    q.put(None)

  thread = threading.Thread(target=work, daemon=True)
  thread.start()
  try:
    while (item := q.get()) is not None:
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    done.set()
    while thread.is_alive():  # unblock a producer waiting on a full queue
      try:
        q.get_nowait()
      except queue.Empty:
        thread.join(0.05)
