"""fogzo_jax.train.sweep: config loading, overrides, the variants × seeds runner."""

import json
import os

import ml_collections
import pytest

from fogzo_jax.train import sweep
from fogzo_jax.train.config import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_load_config_with_and_without_argument():
  llama = sweep.load_config(os.path.join(ROOT, "configs/llama.py:20m"))
  assert llama.model == "llama_20m"
  mnist = sweep.load_config(os.path.join(ROOT, "configs/mnist_mlp.py"))
  assert mnist.model == "mlp"
  with pytest.raises(FileNotFoundError, match="nope.py"):
    sweep.load_config("configs/nope.py")


def test_overrides_parse_json_and_refuse_unknown_fields():
  config = sweep.load_config(os.path.join(ROOT, "configs/llama.py:9m"))
  sweep.apply_overrides(config, ["batch_size=8", "beta_min=0.9", "ste=tanh", "mixup=false",
                                 'model_kwargs={"dim": 64, "layers": 2}'])
  assert (config.batch_size, config.beta_min, config.ste, config.mixup) == (8, 0.9, "tanh", False)
  assert config.model_kwargs.to_dict() == {"dim": 64, "layers": 2}
  sweep.apply_overrides(config, ["quantize_activations=True", "mixup=False"])  # Python spelling
  assert config.quantize_activations is True and config.mixup is False
  validate(config)
  with pytest.raises(KeyError, match="no field 'batchsize'"):
    sweep.apply_overrides(config, ["batchsize=8"])
  with pytest.raises(ValueError, match="key=value"):
    sweep.apply_overrides(config, ["batch_size"])


def _fake_train(calls):
  def train(config, workdir):
    calls.append((config.estimator, config.seed, config.beta_min))
    os.makedirs(workdir, exist_ok=True)
    summary = dict(seed=config.seed, steps=3, wall_time_s=1.0, test_accuracy=0.5 + config.seed,
                   test_loss=1.0)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f)
    return summary
  return train


def test_run_variants_trains_each_once_and_reuses_finished_runs(tmp_path):
  base = ml_collections.ConfigDict(dict(estimator="fogzo", seed=0, beta_min=0.999))
  variants = {"ste": ["estimator=ste"], "b9": ["estimator=fogzo", "beta_min=0.9"]}
  calls = []
  runs = sweep.run_variants(base, variants, [0, 1], str(tmp_path), train_fn=_fake_train(calls))
  assert calls == [("ste", 0, 0.999), ("ste", 1, 0.999), ("fogzo", 0, 0.9), ("fogzo", 1, 0.9)]
  assert [s["seed"] for s in runs["b9"]] == [0, 1]
  assert base.beta_min == 0.999 and base.estimator == "fogzo"  # base left untouched
  again = sweep.run_variants(base, variants, [0, 1], str(tmp_path), train_fn=_fake_train(calls))
  assert len(calls) == 4 and again == runs
  assert sweep.run_variants(base, {"new": []}, [0], str(tmp_path), report_only=True) == {}


def test_headline_metric_and_mean_std():
  assert sweep.headline_metric([{"val_perplexity": 9.0}]) == ("val_perplexity", 1.0)
  assert sweep.headline_metric([{"test_accuracy": 0.9}]) == ("test_accuracy", 100.0)
  assert sweep.mean_std([]) == "–"
  assert sweep.mean_std([2.0]) == "2"
  assert sweep.mean_std([1.0, 2.0, 3.0]) == "2 ± 1"  # sample std
