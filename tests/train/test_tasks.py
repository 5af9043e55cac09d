"""The deeper-network configs end to end at tiny widths: image models on (Fashion-)MNIST, LLaMA
on the shipped Tiny Shakespeare; every config file validates."""

import glob
import importlib.util
import json
import os

import pytest

from fogzo_jax.train import config as config_lib, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION = "fashion_mnist" if os.path.isdir("/usr/share/datasets/fashion-mnist") else "mnist"


def load_config(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", name + ".py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))))
def test_every_config_file_validates(path):
  name = os.path.basename(path)[:-3]
  args = ["9m", "20m", "30m", "95m", "200m", "300m"] if name == "llama" else [None]
  for arg in args:
    config_lib.validate(load_config(name, arg))


def test_llama_config_trains_offline_and_reports_perplexity(tmp_path):
  config = load_config("llama", "9m")
  config.update(num_train_steps=7, eval_every_steps=3)
  config.data.update(batch_size=8, seq_len=32, eval_batch_size=512)
  config.optimizer.warmup_steps = 2
  config.model.update(dim=32, layers=2, heads=2)
  summary = train_and_evaluate(config, str(tmp_path))
  assert {"val_loss", "val_perplexity", "tokens_seen"} <= set(summary)
  assert summary["tokens_seen"] == 7 * 8 * 32
  assert summary["val_perplexity"] < 257  # below a uniform guess over the byte vocabulary
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  # The last step is evaluated even off the eval grid, and the summary reports that evaluation.
  assert [r["step"] for r in rows] == [3, 6, 7] and "val_perplexity" in rows[0]
  assert summary["val_perplexity"] == pytest.approx(rows[-1]["val_perplexity"])
  assert (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("name, kwargs", [
    ("resnet18_in100", dict(width=4, stage_sizes=(1, 1, 1, 1))),
    ("deit_tiny_in100", dict(hidden=16, depth=2, heads=2)),
])
def test_image_configs_run_on_fashion_mnist(tmp_path, name, kwargs):
  config = load_config(name)
  config.num_train_steps = 3
  config.data.update(name=FASHION, batch_size=16, eval_batch_size=5000)
  config.optimizer.warmup_steps = 1
  config.model.update(**kwargs)
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary["steps"] == 3 and 0.0 <= summary["test_accuracy"] <= 1.0
  assert summary["dataset"] == FASHION and "final_train_loss" not in summary


def test_task_mismatch_and_model_kwargs_are_refused(tmp_path):
  config = load_config("llama", "9m")
  config.data.name = "mnist"
  with pytest.raises(config_lib.ConfigError, match="is an image data set but config.model"):
    train_and_evaluate(config, str(tmp_path))
  config = load_config("resnet18_in100")
  config.model.depth = 3
  with pytest.raises(config_lib.ConfigError, match="config.model.depth is not an option"):
    train_and_evaluate(config, str(tmp_path))
  config = load_config("resnet18_in100")
  config.quant.kind = "quest"
  with pytest.raises(config_lib.ConfigError, match="quant.kind='quest' is for dense layers"):
    train_and_evaluate(config, str(tmp_path))
  config = load_config("deit_tiny_in100")
  config.data.image_size = 30
  with pytest.raises(config_lib.ConfigError, match="config.data.image_size 30 is not divisible "
                                                   "by the patch size 4"):
    train_and_evaluate(config, str(tmp_path / "deit"))
  assert not os.path.exists(tmp_path / "deit")


def test_clip_to_range_reaches_the_convolutions_of_a_resnet_with_batchnorm(tmp_path):
  """``optimizer.clip_to_range`` (ours) on a convolutional network (amendment 113's question):
  after a few steps at a rate that pushes plain STE's conv kernels past the 2-bit range, the
  clipped run's final checkpoint has no quantized weight outside it."""
  import clipped_weights  # pylint: disable=import-outside-toplevel
  for name, clip in (("ste", False), ("clip", True)):
    config = load_config("resnet18_in100")
    config.update(num_train_steps=4, checkpoint_every_steps=4)
    config.data.update(name=FASHION, batch_size=16, eval_batch_size=5000)
    config.optimizer.update(warmup_steps=1, learning_rate=0.1, clip_to_range=clip)
    config.estimator.kind = "ste"
    config.model.update(width=4, stage_sizes=(1, 1, 1, 1))
    train_and_evaluate(config, str(tmp_path / name))
  plain, clipped = (clipped_weights.run_stats(str(tmp_path / n)) for n in ("ste", "clip"))
  assert plain["clipped"] > 0.01 and clipped["clipped"] == 0.0
