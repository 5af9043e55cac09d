"""The host pipeline: deterministic, resumable by step, sharded per process, prefetched."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fogzo_jax.data import DataError, make_pipeline, pipeline, prefetch
from fogzo_jax.train.config import default_config

HAS_FASHION = os.path.isdir("/usr/share/datasets/fashion-mnist")


def config_for(**overrides):
  config = default_config()
  config.update(overrides)
  return config


def equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("overrides", [
    dict(dataset="mnist", batch_size=64),
    dict(dataset="mnist", batch_size=64, augment="crop_flip", image_size=28),
    dict(dataset="tiny_shakespeare", model="llama_9m", batch_size=8, seq_len=32),
])
def test_batches_are_a_function_of_seed_and_step(overrides):
  a, b = make_pipeline(config_for(**overrides)), make_pipeline(config_for(**overrides))
  other = make_pipeline(config_for(**overrides, seed=1))
  for step in (0, 5, a.steps_per_epoch + 3):  # also in the second epoch
    assert equal(a.batch(step), b.batch(step))
    assert not equal(a.batch(step), other.batch(step))
  assert not equal(a.batch(0), a.batch(a.steps_per_epoch))  # epochs are reshuffled
  # Resuming = asking for the batches from the checkpoint's step on.
  resumed = [batch for _, batch in prefetch(b.batch, 7, 10)]
  assert all(equal(x, a.batch(7 + i)) for i, x in enumerate(resumed))


def test_processes_get_disjoint_slices_of_the_global_batch():
  config = config_for(dataset="tiny_shakespeare", model="llama_9m", batch_size=8, seq_len=16)
  whole = make_pipeline(config).batch(3)
  parts = [make_pipeline(config, process_index=i, process_count=4).batch(3) for i in range(4)]
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_eval_sets_cover_every_example_once_with_padding():
  config = config_for(dataset="mnist", eval_batch_size=3000)
  data = make_pipeline(config)
  seen, real_total = 0, 0
  for batch, real in data.eval_sets["test"]():
    assert batch["image"].shape[0] == 3000
    assert batch["weights"].sum() == real
    seen, real_total = seen + 1, real_total + real
  assert real_total == 10000 and seen == 4
  assert set(data.eval_sets) == {"test", "train"}


def test_prefetch_reraises_producer_errors():
  def bad(step):
    if step == 2:
      raise RuntimeError("broken batch")
    return {"x": np.zeros(1)}
  with pytest.raises(RuntimeError, match="broken batch"):
    list(prefetch(bad, 0, 5))


def test_tiny_shakespeare_lm_pipeline():
  config = config_for(dataset="tiny_shakespeare", model="llama_9m", batch_size=4, seq_len=64)
  data = make_pipeline(config)
  batch = data.batch(0)
  assert data.task == "lm" and data.info["vocab_size"] == 257
  assert batch["inputs"].shape == batch["targets"].shape == (4, 64)
  np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
  assert data.info["train_sequences"] == 1_003_854 // 65  # 90 % of the bytes, plus one EOS
  assert "validation" in data.eval_sets


def test_c4_path_with_mock_tfds(tmp_path):
  config = config_for(dataset="c4", model="llama_9m", tfds_name="lm1b", data_dir=str(tmp_path),
                      batch_size=2, seq_len=8, eval_tokens=100)
  with tfds.testing.mock_data(num_examples=50, policy=tfds.testing.MockPolicy.USE_CODE):
    data = make_pipeline(config, total_steps=3)
  assert os.listdir(tmp_path / "fogzo_token_cache")
  assert data.batch(2)["inputs"].shape == (2, 8)
  again = make_pipeline(config, total_steps=3)  # cache reused: no tfds needed any more
  assert equal(again.batch(1), data.batch(1))


def test_image_folder_pipeline_with_deit_augmentation(tmp_path):
  rng = np.random.default_rng(0)
  for split in ("train", "val"):
    for c in ("cat", "dog", "eel"):
      os.makedirs(tmp_path / split / c)
      for i in range(4):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(
            tmp_path / split / c / f"{i}.jpg")
  config = config_for(dataset="imagefolder", data_dir=str(tmp_path), image_size=32,
                      augment="deit", mixup=True, normalize="imagenet", batch_size=4,
                      eval_batch_size=5)
  data = make_pipeline(config)
  batch = data.batch(1)
  assert batch["image"].shape == (4, 32, 32, 3) and batch["label_probs"].shape == (4, 3)
  evals = list(data.eval_sets["test"]())
  assert sum(real for _, real in evals) == 12 and evals[0][0]["image"].shape == (5, 32, 32, 3)


def test_imagenet_tfds_pipeline_with_mock_data():
  config = config_for(dataset="imagenet2012", image_size=32, augment="crop_flip", batch_size=4,
                      normalize="imagenet", eval_batch_size=4, eval_train=False)
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    data = make_pipeline(config)
    batch = data.batch(0)
    evals = list(data.eval_sets["test"]())
  assert batch["image"].shape == (4, 32, 32, 3) and data.info["num_classes"] == 1000
  assert sum(real for _, real in evals) == 8


@pytest.mark.skipif(not HAS_FASHION, reason="apt package dataset-fashion-mnist not installed")
def test_fashion_mnist_real_files():
  data = make_pipeline(config_for(dataset="fashion_mnist", batch_size=100))
  assert data.steps_per_epoch == 600 and data.info["num_classes"] == 10
  assert data.batch(0)["image"].shape == (100, 28, 28, 1)


def test_clear_errors(tmp_path):
  with pytest.raises(DataError, match="needs config.data_dir"):
    make_pipeline(config_for(dataset="cifar10"))
  with pytest.raises(DataError, match="exceeds the 60000 training images"):
    make_pipeline(config_for(dataset="mnist", batch_size=70000))
  with pytest.raises(DataError, match="needs config.data_dir: a .txt"):
    make_pipeline(config_for(dataset="text", model="llama_9m"))
  assert pipeline.NATIVE_SIZE["cifar10"] == 32
