"""End to end through train_and_evaluate and train.py on the shipped MNIST."""

import json
import os
import subprocess
import sys

import pytest

from configs import mnist_mlp  # the repo root is on pytest's pythonpath (pyproject.toml)
from fogzo_jax.train import ConfigError, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = {"estimator", "steps", "final_train_loss", "test_loss", "test_accuracy",
          "forward_passes", "wall_time_s", "params_sha256"}


def config_for(estimator, steps=40, **overrides):
  config = mnist_mlp.get_config()
  config.estimator, config.num_train_steps, config.num_perturbations = estimator, steps, 2
  config.update(overrides)
  return config


@pytest.mark.parametrize("estimator, passes", [("ste", 3), ("fogzo", 7), ("nspsa", 4)])
def test_each_estimator_trains(tmp_path, estimator, passes):
  summary = train_and_evaluate(config_for(estimator), str(tmp_path))
  assert FIELDS <= set(summary)
  assert summary["steps"] == 40 and summary["forward_passes"] == 40 * passes
  with open(tmp_path / "summary.json") as f:
    assert json.load(f) == summary
  assert (tmp_path / "curves.png").stat().st_size > 1000
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert rows[-1]["test_accuracy"] == summary["test_accuracy"]
  assert os.listdir(tmp_path / "tensorboard")
  if estimator != "nspsa":  # chance level is ln 10 = 2.30; 40 steps of STE/FOGZO go well below
    assert summary["final_train_loss"] < 1.5 and summary["test_accuracy"] > 0.5


def test_same_seed_same_params(tmp_path):
  a = train_and_evaluate(config_for("fogzo", steps=10), str(tmp_path / "a"))
  b = train_and_evaluate(config_for("fogzo", steps=10), str(tmp_path / "b"))
  c = train_and_evaluate(config_for("fogzo", steps=10, seed=1), str(tmp_path / "c"))
  assert a["params_sha256"] == b["params_sha256"] != c["params_sha256"]


@pytest.mark.parametrize("field, value, message", [
    ("estimator", "adam", "config.estimator must be one of 'ste', 'fogzo', 'nspsa'"),
    ("ste", "relu", "config.ste must be one of 'identity', 'hardtanh', 'tanh', 'approxsign'"),
    ("dataset", "cifar", "config.dataset must be one of 'mnist', 'fashion_mnist'"),
    ("beta_min", 1.5, "config.beta_min must be a number ≥ 0.0 and ≤ 1.0"),
    ("num_perturbations", 0, "config.num_perturbations must be an integer ≥ 1"),
])
def test_bad_config_is_refused(tmp_path, field, value, message):
  config = config_for("ste")
  config[field] = value
  with pytest.raises(ConfigError, match=message):
    train_and_evaluate(config, str(tmp_path))


def run_train(tmp_path, *overrides):
  return subprocess.run(
      [sys.executable, "train.py", "--config=configs/mnist_mlp.py", f"--workdir={tmp_path}",
       *overrides], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_config_errors_exit_nonzero_without_traceback(tmp_path):
  for override, field in [("--config.estimator=adam", "estimator"),
                          ("--config.ste=relu", "ste"), ("--config.dataset=cifar", "dataset")]:
    proc = run_train(tmp_path, override)
    assert proc.returncode == 2, proc.stderr
    assert f"error: config.{field} must be one of" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_data_dir(tmp_path):
  proc = run_train(tmp_path, f"--config.data_dir={tmp_path / 'missing'}")
  assert proc.returncode == 2 and "is not a folder" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_cli_runs(tmp_path):
  proc = run_train(tmp_path, "--config.num_train_steps=5", "--config.estimator=fogzo")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "test accuracy" in proc.stdout
  assert json.load(open(tmp_path / "summary.json"))["steps"] == 5
