"""End to end through train_and_evaluate and train.py on the shipped MNIST."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import mnist_mlp  # the repo root is on pytest's pythonpath (pyproject.toml)
from fogzo_jax.train import ConfigError, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = {"estimator", "steps", "final_train_loss", "test_loss", "test_accuracy",
          "forward_passes", "wall_time_s", "params_sha256"}


def config_for(estimator, steps=40, seed=0):
  config = mnist_mlp.get_config()
  config.estimator.update(kind=estimator, num_perturbations=2)
  config.num_train_steps, config.seed = steps, seed
  return config


@pytest.mark.parametrize("estimator, passes", [("ste", 3), ("fogzo", 7), ("nspsa", 4),
                                               ("gradient_noise", 3)])
def test_each_estimator_trains(tmp_path, estimator, passes):
  config = config_for(estimator)
  if estimator == "gradient_noise":  # the control of ours needs its noise share
    config.estimator.noise_share = 0.3
  summary = train_and_evaluate(config, str(tmp_path))
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


@pytest.mark.parametrize("section, field, value, message", [
    ("estimator", "kind", "adam",
     "config.estimator.kind must be one of 'ste', 'fogzo', 'nspsa', 'gradient_noise'"),
    ("quant", "ste", "relu", "config.quant.ste must be one of 'identity', 'hardtanh', 'tanh'"),
    ("data", "name", "cifar", "config.data.name must be one of 'mnist', 'fashion_mnist'"),
    ("estimator", "beta_min", 1.5, "config.estimator.beta_min must be a finite number ≥ 0.0 "
     "and ≤ 1.0"),
    ("estimator", "num_perturbations", 0,
     "config.estimator.num_perturbations must be an integer ≥ 1"),
])
def test_bad_config_is_refused(tmp_path, section, field, value, message):
  config = config_for("ste")
  with config.ignore_type():
    config[section][field] = value
  with pytest.raises(ConfigError, match=message):
    train_and_evaluate(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")  # nothing written


def run_train(tmp_path, *overrides, timeout=300):
  return subprocess.run(
      [sys.executable, "train.py", "--config=configs/mnist_mlp.py", f"--workdir={tmp_path}",
       *overrides], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_cli_config_errors_exit_2_in_one_line(tmp_path):
  for override, expected in [
      ("--config.estimator.kind=adam", "error: config.estimator.kind must be one of"),
      ("--config.quant.ste=relu", "error: config.quant.ste must be one of"),
      ("--config.data.name=cifar", "error: config.data.name must be one of"),
      ("--config.optimizer.learning_rate=inf", "error: config.optimizer.learning_rate must be "
                                               "a finite number > 0.0"),
      ("--config.optimizer.lerning_rate=0.1", "did you mean --config.optimizer.learning_rate?"),
      ("--config.foo=1", "error: "),
  ]:
    proc = run_train(tmp_path / "w", override)
    assert proc.returncode == 2, (override, proc.stderr)
    assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not os.path.exists(tmp_path / "w")


def test_cli_missing_data_dir(tmp_path):
  proc = run_train(tmp_path, f"--config.data.data_dir={tmp_path / 'missing'}")
  assert proc.returncode == 2 and "is not a folder" in proc.stderr
  assert "Traceback" not in proc.stderr


def test_cli_runs_and_keeps_library_chatter_in_the_log_file(tmp_path):
  proc = run_train(tmp_path, "--config.num_train_steps=5", "--config.estimator.kind=fogzo",
                   "--config.estimator.noise_share=0.3", "--config.estimator.g_hat_clip=half_step")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "test accuracy" in proc.stdout and "data: " in proc.stdout
  assert "Closing" not in proc.stdout + proc.stderr and "orbax" not in proc.stderr
  assert json.load(open(tmp_path / "summary.json"))["steps"] == 5
  assert os.path.getsize(tmp_path / "train.log") > 0


def test_activation_steps_start_from_the_first_batch(tmp_path):
  """W+A: each activation quantizer's step is LSQ's rule 2·mean|x|/√Q_P on the first training
  batch (as the LSQ recipe initialises it), not a constant."""
  import jax  # pylint: disable=import-outside-toplevel
  from fogzo_jax.quant import lsq  # pylint: disable=import-outside-toplevel
  from fogzo_jax.train import loop  # pylint: disable=import-outside-toplevel
  config = config_for("ste", steps=1)
  config.quant.activations = True
  run, state = loop.build(config)
  first = run.data.train[0]["image"].reshape(512, -1)
  expected = lsq.lsq_init_step(jax.numpy.asarray(first), bits=2, signed=True)
  np.testing.assert_allclose(state.quant["Dense_0"]["input"], expected, rtol=1e-5)
  assert abs(float(state.quant["Dense_0"]["input"]) - 1.0) > 1e-3


def test_wall_time_adds_up_across_a_resume(tmp_path):
  config = config_for("ste", steps=20)
  config.checkpoint_every_steps = 10
  first = train_and_evaluate(config, str(tmp_path))
  os.remove(tmp_path / "summary.json")
  config.num_train_steps = 20
  import shutil  # pylint: disable=import-outside-toplevel
  shutil.rmtree(tmp_path / "checkpoints" / "20")  # as if killed after step 10's checkpoint
  again = train_and_evaluate(config, str(tmp_path))
  assert again["params_sha256"] == first["params_sha256"]
  meta = json.load(open(tmp_path / "checkpoints" / "10" / "meta" / "metadata"))
  assert again["wall_time_s"] > meta["wall_time_s"] > 0


def test_a_run_with_update_noise_resumes_bit_exact(tmp_path):
  """The walk's noise key and count live in the optimizer state (optax.add_noise's typed key):
  a run killed after step 10's checkpoint ends with the uninterrupted run's parameters."""
  config = config_for("ste", steps=20)
  config.optimizer.update_noise_share = 0.3
  config.checkpoint_every_steps = 10
  first = train_and_evaluate(config, str(tmp_path / "a"))
  plain = train_and_evaluate(config_for("ste", steps=20), str(tmp_path / "b"))
  assert first["params_sha256"] != plain["params_sha256"]
  import shutil  # pylint: disable=import-outside-toplevel
  os.remove(tmp_path / "a" / "summary.json")
  shutil.rmtree(tmp_path / "a" / "checkpoints" / "20")
  again = train_and_evaluate(config, str(tmp_path / "a"))
  assert again["params_sha256"] == first["params_sha256"]


@pytest.mark.parametrize("kind", ["fixed", "lsq"])
def test_clip_to_range_leaves_no_quantized_weight_past_the_range(tmp_path, kind):
  """``optimizer.clip_to_range`` (ours) through the loop: the final checkpoint has no quantized
  weight outside its quantizer's range (``experiments/clipped_weights.py``; LSQ: with its learned
  step), where plain STE's has some; the loop passes the quant collection and the spec."""
  import clipped_weights  # pylint: disable=import-outside-toplevel
  for name, clip in (("ste", False), ("clip", True)):
    config = config_for("ste", steps=30)
    config.quant.kind = kind
    config.optimizer.clip_to_range = clip
    train_and_evaluate(config, str(tmp_path / name))
  plain, clipped = (clipped_weights.run_stats(str(tmp_path / n)) for n in ("ste", "clip"))
  assert plain["clipped"] > 0.01 and clipped["clipped"] == 0.0
