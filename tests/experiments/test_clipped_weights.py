"""experiments/clipped_weights.py: the weights outside a quantizer's range, post hoc."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import clipped_weights  # experiments/ is on pytest's pythonpath (pyproject.toml)

from fogzo_jax.quant import fixed, lsq, quest


@pytest.mark.parametrize("kind", ["fixed", "lsq", "quest"])
def test_clipped_is_where_the_ste_gradient_is_zero(kind):
  """The mask is exactly where the quantizer's backward is 0 (QuEST: in the rotated basis), and
  the distance past the range is in steps."""
  w = jnp.asarray(np.random.default_rng(0).normal(scale=0.5, size=(64, 8)), jnp.float32)
  step, bits = jnp.float32(0.25), 2
  if kind == "fixed":
    grad = jax.grad(lambda x: jnp.sum(fixed.quantize(x, bits, step)))(w)
  elif kind == "lsq":
    grad = jax.grad(lambda x: jnp.sum(lsq.lsq_quantize(x, step, bits)))(w)
  else:
    rotated = quest.rotate(w, axis=-2)
    grad = jax.grad(lambda x: jnp.sum(quest.quest_quantize(x, bits, axis=-2)))(rotated)
  if kind == "quest":
    step = quest.quest_weight_step(w, bits)  # what layers.weight_step_sizes gives for QuEST
  clipped, past = clipped_weights.outside(w, step, kind, bits)
  assert 0.02 < clipped.mean() < 0.6  # both kinds of weight are there
  np.testing.assert_array_equal(clipped, np.asarray(grad) == 0)
  assert np.all(past[~clipped] == 0) and np.all(past[clipped] > 0)
  if kind != "quest":  # 2 bits: levels −2 … 1 (fixed), −Q_N = −2 … Q_P = 1 (LSQ)
    y = np.asarray(w) / 0.25
    np.testing.assert_allclose(past, np.maximum(np.maximum(y - 1, -2 - y), 0), rtol=1e-6)


def test_summary_and_adam_moments():
  clipped = np.array([True, False, False, True])
  past = np.array([3.0, 0.0, 0.0, 0.5])
  mu, nu = np.array([0.0, 0.2, -0.2, 0.1]), np.array([1.0, 1.0, 1.0, 1.0])
  r = clipped_weights.summarize(clipped, past, mu, nu)
  assert r["clipped"] == 0.5 and r["beyond_1"] == 0.25
  assert r["adam_clipped"] == pytest.approx(0.05) and r["adam_inside"] == pytest.approx(0.2)
  state = [{"count": 1}, [{"mu": {"w": 1}, "nu": {"w": 2}, "count": 3}, {}]]
  assert clipped_weights.adam_moments(state) == ({"w": 1}, {"w": 2})
  assert clipped_weights.adam_moments([{"count": 1}]) is None


def test_reads_a_training_checkpoint(tmp_path):
  """The MNIST MLP (fixed scale, quantized biases) after a few steps: the statistics of its
  checkpoint; a workdir without one is one clear error."""
  from configs import mnist_mlp  # pylint: disable=import-outside-toplevel
  from fogzo_jax.train import train_and_evaluate  # pylint: disable=import-outside-toplevel
  config = mnist_mlp.get_config()
  config.update(num_train_steps=3, checkpoint_every_steps=3)
  config.estimator.update(kind="gradient_noise", noise_share=0.3)
  train_and_evaluate(config, str(tmp_path / "run"))
  r = clipped_weights.run_stats(str(tmp_path / "run"))
  assert r["step"] == 3 and 0.0 <= r["clipped"] <= 1.0 and r["adam_inside"] > 0
  os.makedirs(tmp_path / "empty" / "checkpoints")
  (tmp_path / "empty" / "config.json").write_text((tmp_path / "run" / "config.json").read_text())
  with pytest.raises(ValueError, match="has no checkpoint"):
    clipped_weights.run_stats(str(tmp_path / "empty"))
