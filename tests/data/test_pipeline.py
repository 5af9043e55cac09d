"""The grain pipeline: deterministic, resumable from the iterator state, sharded per process."""

import os

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fogzo_jax.data import DataError, load_image_dataset, make_pipeline, pipeline

HAS_FASHION = os.path.isdir("/usr/share/datasets/fashion-mnist")


def make(seed=0, **data):
  return make_pipeline(**data, seed=seed)


def equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("data", [
    dict(name="mnist", batch_size=64),
    dict(name="mnist", batch_size=64, augment="crop_flip", image_size=28),
    dict(name="tiny_shakespeare", batch_size=8, seq_len=32),
])
def test_batches_are_a_function_of_seed_and_step(data):
  a, b, other = make(**data).train, make(**data).train, make(seed=1, **data).train
  steps = make(**data).steps_per_epoch
  for step in (0, 5, steps + 3):  # also in the second epoch
    assert equal(a[step], b[step])
    assert not equal(a[step], other[step])
  assert not equal(a[0], a[steps])  # epochs are reshuffled


def test_one_epoch_visits_every_example_once():
  data = make(name="mnist", batch_size=1000, eval_train=False)
  epoch = np.concatenate([data.train[s]["image"] for s in range(60)]).reshape(60000, -1)
  reference = load_image_dataset("mnist").train_images.reshape(60000, -1) / np.float32(255)
  key = lambda rows: sorted(hash(r.tobytes()) for r in rows.astype(np.float32))
  assert key(epoch) == key(reference)


def test_iterator_state_resumes_exactly():
  """The checkpointed position of grain's iterator gives the same batches afterwards."""
  train = make(name="tiny_shakespeare", batch_size=8, seq_len=32).train
  options = grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)
  it = iter(train.to_iter_dataset(options))
  for _ in range(7):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  fresh = iter(train.to_iter_dataset(options))
  fresh.set_state(state)
  assert all(equal(next(fresh), e) for e in expected)
  assert all(equal(e, train[7 + i]) for i, e in enumerate(expected))


@pytest.mark.parametrize("data", [dict(name="tiny_shakespeare", batch_size=8, seq_len=16),
                                  dict(name="mnist", batch_size=8, augment="crop_flip")])
def test_processes_get_contiguous_slices_of_the_global_batch(data):
  whole = make(**data).train[3]
  parts = [make_pipeline(**data, seed=0, process_index=i, process_count=4).train[3]
           for i in range(4)]
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_eval_sets_cover_every_example_once_with_padding():
  data = make(name="mnist", eval_batch_size=3000)
  batches = list(data.eval_sets["test"])
  assert len(batches) == 4 and all(b["image"].shape[0] == 3000 for b in batches)
  assert sum(b["weights"].sum() for b in batches) == 10000
  assert batches[-1]["weights"][1000:].sum() == 0  # the padding rows
  assert set(data.eval_sets) == {"test", "train"}
  halves = [list(make_pipeline(name="mnist", eval_batch_size=3000, seed=0, process_index=i,
                               process_count=2).eval_sets["test"]) for i in range(2)]
  for whole, a, b in zip(batches, *halves):
    np.testing.assert_array_equal(np.concatenate([a["label"], b["label"]]), whole["label"])


def test_tiny_shakespeare_lm_pipeline():
  data = make(name="tiny_shakespeare", batch_size=4, seq_len=64)
  batch = data.train[0]
  assert data.task == "lm" and data.model_args == {"vocab_size": 257}
  assert batch["inputs"].shape == batch["targets"].shape == (4, 64)
  np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
  assert data.info["train_sequences"] == 1_003_854 // 65  # 90 % of the bytes, plus one EOS
  assert "validation" in data.eval_sets


def test_c4_path_with_mock_tfds(tmp_path):
  data = dict(name="c4", tfds_name="lm1b", data_dir=str(tmp_path), batch_size=2, seq_len=8,
              eval_tokens=100)
  with tfds.testing.mock_data(num_examples=50, policy=tfds.testing.MockPolicy.USE_CODE):
    built = make_pipeline(**data, seed=0, total_steps=3)
  assert os.listdir(tmp_path / "fogzo_token_cache")
  assert built.train[2]["inputs"].shape == (2, 8)
  again = make_pipeline(**data, seed=0, total_steps=3)  # cache reused: no tfds needed any more
  assert equal(again.train[1], built.train[1])


def _image_folder(root, size=(48, 40), per_class=4):
  rng = np.random.default_rng(0)
  for split in ("train", "val"):
    for c in ("cat", "dog", "eel"):
      os.makedirs(root / split / c)
      for i in range(per_class):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            root / split / c / f"{i}.jpg")


def test_image_folder_pipeline_with_deit_augmentation(tmp_path):
  _image_folder(tmp_path)
  data = make(name="imagefolder", data_dir=str(tmp_path), image_size=32, augment="deit",
              mixup=True, normalize="imagenet", batch_size=4, eval_batch_size=5)
  batch = data.train[1]
  assert batch["image"].shape == (4, 32, 32, 3) and batch["label_probs"].shape == (4, 3)
  evals = list(data.eval_sets["test"])
  assert sum(b["weights"].sum() for b in evals) == 12 and evals[0]["image"].shape == (5, 32, 32, 3)


def test_cifar10_pipeline_reads_the_archives_into_memory(tmp_path, make_cifar_archives):
  make_cifar_archives(tmp_path, per_class=2)
  kw = dict(name="cifar10", data_dir=str(tmp_path), augment="crop_flip", normalize="imagenet",
            batch_size=4, eval_batch_size=8, eval_train=False)
  data = make(**kw)
  assert data.steps_per_epoch == 5 and data.model_args["num_classes"] == 10
  assert data.info["image_size"] == 32 and "CIFAR-10 in memory" in data.info["source"]
  assert data.train[3]["image"].shape == (4, 32, 32, 3)
  assert equal(data.train[3], make(**kw).train[3]) and not equal(data.train[3], data.train[4])
  evals = list(data.eval_sets["test"])
  assert sum(b["weights"].sum() for b in evals) == 20 and set(data.eval_sets) == {"test"}


def test_imagenet_tfds_pipeline_with_mock_data():
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    data = make(name="imagenet2012", image_size=32, augment="crop_flip", batch_size=4,
                normalize="imagenet", eval_batch_size=4, eval_train=False)
    batch = data.train[0]
    evals = list(data.eval_sets["test"])
  assert batch["image"].shape == (4, 32, 32, 3) and data.model_args["num_classes"] == 1000
  assert sum(b["weights"].sum() for b in evals) == 8


@pytest.mark.skipif(not HAS_FASHION, reason="apt package dataset-fashion-mnist not installed")
def test_fashion_mnist_real_files():
  data = make(name="fashion_mnist", batch_size=100)
  assert data.steps_per_epoch == 600 and data.model_args["num_classes"] == 10
  assert data.train[0]["image"].shape == (100, 28, 28, 1)


def test_clear_errors(tmp_path):
  with pytest.raises(DataError, match="needs config.data.data_dir"):
    make(name="cifar10")
  with pytest.raises(DataError, match="holds neither cifar10_train_jpg.tar.gz"):
    make(name="cifar10", data_dir=str(tmp_path))
  with pytest.raises(DataError, match="exceeds the 60000 training images"):
    make(name="mnist", batch_size=70000)
  with pytest.raises(ValueError, match="data_dir must be a .txt"):
    make(name="text")
  with pytest.raises(DataError, match="batch_size 10 is not divisible by the 4 processes"):
    make_pipeline(name="mnist", batch_size=10, seed=0, process_count=4)
  assert pipeline.NATIVE_SIZE["cifar10"] == 32
