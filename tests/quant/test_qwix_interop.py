"""fz.fogzo trains Qwix-QAT-quantized Flax models (a plain nn.Dense MLP and our LLaMA)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fogzo_jax as fz
from fogzo_jax import models
from fogzo_jax.data import make_pipeline
from fogzo_jax.quant import qwix_interop

qwix = pytest.importorskip("qwix")


def int4(model, path=".*"):
  return qwix.quantize_model(model, qwix.QtProvider([qwix.QtRule(module_path=path,
                                                                 weight_qtype="int4")]))


def test_step_matches_qwix_grid():
  dense = nn.Dense(6)
  x = jnp.eye(5)
  v = dense.init(jax.random.key(0), x)
  kernel = v["params"]["kernel"]
  wq = int4(dense).apply(v, x) - v["params"]["bias"]  # rows of Qwix's fake-quantized kernel
  step = qwix_interop.absmax_step(kernel, 4)
  levels = np.asarray(wq / step)
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)  # on Qwix's grid
  assert levels.min() >= -8 and levels.max() <= 7
  assert np.abs(np.asarray(wq - kernel)).max() > 0                 # Qwix really quantizes


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Dense(32)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(x)


def train(variables, loss_fn, batches, path=".*", steps=30, lr=3e-3):
  """FOGZO on Qwix's int4 weights: ε from Qwix's absmax step, only Qwix-quantized kernels."""
  tx = optax.chain(
      fz.fogzo(num_perturbations=1, beta=0.999, noise="uniform", key=1,
               epsilon=functools.partial(qwix_interop.qwix_epsilon, bits=4, module_path=path),
               mask=functools.partial(qwix_interop.qwix_mask, module_path=path)),
      optax.adamw(lr))
  params = variables["params"]
  state = tx.init(params)

  @jax.jit
  def step(params, state, batch):
    loss, g = jax.value_and_grad(loss_fn)(params, batch)
    updates, state = tx.update(g, state, params, value_fn=loss_fn, batch=batch)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for i in range(steps):
    params, state, loss = step(params, state, batches(i))
    losses.append(float(loss))
  return losses


def test_fogzo_trains_a_qwix_int4_mlp_on_mnist():
  data = make_pipeline(name="mnist", batch_size=128, seed=0)
  qmodel = int4(MLP())
  v = nn.unbox(qmodel.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))))
  mask = qwix_interop.qwix_mask(v["params"])
  assert mask == {"Dense_0": {"kernel": True, "bias": False},
                  "Dense_1": {"kernel": True, "bias": False}}

  def loss_fn(params, batch):
    logits = qmodel.apply({"params": params}, batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  losses = train(v, loss_fn, data.train.__getitem__, steps=40)
  assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])


def test_fogzo_trains_a_qwix_int4_llama():
  data = make_pipeline(name="tiny_shakespeare", batch_size=8, seq_len=32, seed=0)
  model = models.get_model("llama_9m", vocab_size=257, dim=32, layers=2, heads=2)
  qmodel = int4(model, ".*blocks.*")
  v = nn.unbox(qmodel.init(jax.random.key(0), jnp.zeros((1, 32), jnp.int32)))
  mask = qwix_interop.qwix_mask(v["params"], ".*blocks.*")
  assert sum(jax.tree.leaves(mask)) == 7 and not mask["head"]["kernel"]

  def loss_fn(params, batch):
    logits = qmodel.apply({"params": params}, batch["inputs"], batch["segment_ids"])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
    return jnp.sum(ce * batch["weights"]) / jnp.sum(batch["weights"])

  losses = train(v, loss_fn, data.train.__getitem__, path=".*blocks.*", steps=25, lr=1e-2)
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
