"""fogzo_jax.train.sweep: config loading, overrides, the variants × seeds runner."""

import json
import logging
import os
import warnings

import ml_collections
import pytest

from fogzo_jax.train import sweep
from fogzo_jax.train.config import validate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_load_config_with_and_without_argument():
  llama = sweep.load_config(os.path.join(ROOT, "configs/llama.py:20m"))
  assert llama.model.name == "llama_20m"
  mnist = sweep.load_config(os.path.join(ROOT, "configs/mnist_mlp.py"))
  assert mnist.model.name == "mlp"
  with pytest.raises(FileNotFoundError, match="nope.py"):
    sweep.load_config("configs/nope.py")


def test_overrides_parse_json_and_refuse_unknown_fields():
  config = sweep.load_config(os.path.join(ROOT, "configs/llama.py:9m"))
  sweep.apply_overrides(config, ["data.batch_size=8", "estimator.beta_min=0.9", "quant.ste=tanh",
                                 "data.mixup=false", "model.dim=64", "model.layers=2",
                                 "estimator.noise_share=0.3"])
  assert (config.data.batch_size, config.estimator.beta_min, config.quant.ste,
          config.data.mixup) == (8, 0.9, "tanh", False)
  assert (config.model.dim, config.model.layers, config.estimator.noise_share) == (64, 2, 0.3)
  sweep.apply_overrides(config, ["quant.activations=True", "data.mixup=False"])  # Python spelling
  assert config.quant.activations is True and config.data.mixup is False
  validate(config)
  with pytest.raises(KeyError, match="no field 'data.batchsize'"):
    sweep.apply_overrides(config, ["data.batchsize=8"])
  with pytest.raises(KeyError, match="no section 'dat'"):
    sweep.apply_overrides(config, ["dat.batch_size=8"])
  with pytest.raises(ValueError, match="key=value"):
    sweep.apply_overrides(config, ["data.batch_size"])


def _fake_train(calls):
  def train(config, workdir):
    calls.append((config.estimator.kind, config.seed, config.estimator.beta_min))
    os.makedirs(workdir, exist_ok=True)
    summary = dict(seed=config.seed, steps=3, wall_time_s=1.0, test_accuracy=0.5 + config.seed,
                   test_loss=1.0)
    for name, content in (("summary.json", summary), ("config.json", config.to_dict())):
      with open(os.path.join(workdir, name), "w") as f:
        json.dump(content, f)
    return summary
  return train


def test_run_variants_trains_each_once_and_reuses_finished_runs(tmp_path):
  base = ml_collections.ConfigDict(dict(estimator=dict(kind="fogzo", beta_min=0.999), seed=0))
  variants = {"ste": ["estimator.kind=ste"], "b9": ["estimator.kind=fogzo",
                                                    "estimator.beta_min=0.9"]}
  calls = []
  runs = sweep.run_variants(base, variants, [0, 1], str(tmp_path), train_fn=_fake_train(calls))
  assert calls == [("ste", 0, 0.999), ("ste", 1, 0.999), ("fogzo", 0, 0.9), ("fogzo", 1, 0.9)]
  assert [s["seed"] for s in runs["b9"]] == [0, 1]
  assert base.estimator.beta_min == 0.999 and base.estimator.kind == "fogzo"  # base untouched
  again = sweep.run_variants(base, variants, [0, 1], str(tmp_path), train_fn=_fake_train(calls))
  assert len(calls) == 4 and again == runs
  assert sweep.run_variants(base, {"new": []}, [0], str(tmp_path), report_only=True) == {}
  # A finished run of another config is not silently reused.
  with pytest.raises(ValueError, match=r"another config \(fields \['estimator.beta_min'\]\)"):
    sweep.run_variants(base, {"b9": ["estimator.beta_min=0.5"]}, [0], str(tmp_path),
                       train_fn=_fake_train(calls))


def test_headline_metric_and_mean_std():
  assert sweep.headline_metric([{"val_perplexity": 9.0}]) == ("val_perplexity", 1.0)
  assert sweep.headline_metric([{"test_accuracy": 0.9}]) == ("test_accuracy", 100.0)
  assert sweep.mean_std([]) == "–"
  assert sweep.mean_std([2.0]) == "2"
  assert sweep.mean_std([1.0, 2.0, 3.0]) == "2 ± 1"  # sample std


def test_a_sweep_run_logs_the_libraries_to_its_train_log_and_restores_the_terminal(
    tmp_path, monkeypatch):
  """sweep.train_logged (every sweep's default): what the libraries log during a run (absl, as
  orbax does; Python warnings) goes to <workdir>/train.log, and the terminal's handlers, level
  and warning filters are back afterwards, also when the run fails."""
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
  import fogzo_jax.train  # pylint: disable=import-outside-toplevel
  root = logging.getLogger()
  before = list(root.handlers), root.level, list(warnings.filters)

  def fake_train(config, workdir):
    absl_logging.info("orbax-like chatter")
    warnings.warn("a library warning", DeprecationWarning)
    if config.seed == 1:
      raise RuntimeError("a failed run")
    return {"seed": config.seed}
  monkeypatch.setattr(fogzo_jax.train, "train_and_evaluate", fake_train)
  config = ml_collections.ConfigDict(dict(seed=0))
  assert sweep.train_logged(config, str(tmp_path / "a")) == {"seed": 0}
  log = (tmp_path / "a" / "train.log").read_text()
  assert "INFO absl: orbax-like chatter" in log and "a library warning" in log
  assert (list(root.handlers), root.level, list(warnings.filters)) == before
  config.seed = 1
  with pytest.raises(RuntimeError, match="a failed run"):
    sweep.train_logged(config, str(tmp_path / "b"))
  assert "orbax-like chatter" in (tmp_path / "b" / "train.log").read_text()
  assert (list(root.handlers), root.level, list(warnings.filters)) == before
