"""Training of a quantized classifier with STE, FOGZO or n-SPSA: ``train_and_evaluate``.

One jitted ``train_step`` serves the three estimators (the choice is static):

  ste:   G = g (the STE gradient)                                     cost F + B
  fogzo: G = fz.fogzo(...).update(g, ..., value_fn=loss_fn, ...)      cost F + B + 2n·F
  nspsa: G = fz.nspsa(...).update(0, ..., value_fn=loss_fn, ...)      cost 2n·F

then θ ← AdamW(θ, G) with a cosine learning-rate schedule. ``forward_passes`` in the summary
counts these costs with B = 2F (the forward that n-SPSA runs only to log its loss is not counted,
as in the paper's accounting).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm import tqdm

import fogzo_jax as fz
from fogzo_jax import data as data_lib
from fogzo_jax import models
from fogzo_jax.quant.layers import quant_epsilon
from fogzo_jax.train import config as config_lib
from fogzo_jax.train import metrics as metrics_lib


class TrainState(NamedTuple):
  step: jax.Array
  params: Any          # trainable latent weights θ
  quant: Any           # fixed quantizer scales α, same structure as params
  opt_state: Any       # estimator state (count, PRNG key) + AdamW state


def forward_passes_per_step(config) -> int:
  """Forward-pass equivalents of one step, counting a backward as 2."""
  n = config.num_perturbations
  return {"ste": 3, "fogzo": 3 + 2 * n, "nspsa": 2 * n}[config.estimator]


def make_optimizer(config, quant, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """chain(estimator, AdamW with cosine decay); the estimator is the identity for STE."""
  _, noise = fz.implicit_smoothing(config.ste)
  zo_args = dict(num_perturbations=config.num_perturbations, epsilon=quant_epsilon(quant, config.ste),
                 noise=noise, key=config.seed + 1, chunk_size=config.chunk_size or None)
  estimator = {
      "ste": optax.identity,
      "fogzo": lambda: fz.fogzo(beta=fz.linear_beta(config.beta_min, total_steps), **zo_args),
      "nspsa": lambda: fz.nspsa(**zo_args),
  }[config.estimator]()
  schedule = optax.cosine_decay_schedule(config.learning_rate, total_steps)
  return optax.chain(estimator, optax.adamw(schedule, weight_decay=config.weight_decay))


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def create_train_state(config, model, tx_fn, sample_images) -> tuple[TrainState, Any]:
  variables = model.init(jax.random.key(config.seed), sample_images)
  tx = tx_fn(variables["quant"])
  state = TrainState(step=jnp.zeros([], jnp.int32), params=variables["params"],
                     quant=variables["quant"], opt_state=tx.init(variables["params"]))
  return state, tx


def train_step(state: TrainState, images, labels, *, model, tx, estimator: str):
  """One optimisation step; returns the new state and the loss at θ (before the update)."""
  def loss_fn(params, images, labels):
    return cross_entropy(model.apply({"params": params, "quant": state.quant}, images), labels)

  if estimator == "nspsa":
    loss, grads = loss_fn(state.params, images, labels), jax.tree.map(jnp.zeros_like,
                                                                        state.params)
  else:
    loss, grads = jax.value_and_grad(loss_fn)(state.params, images, labels)
  updates, opt_state = tx.update(grads, state.opt_state, state.params, value_fn=loss_fn,
                                 images=images, labels=labels)
  params = optax.apply_updates(state.params, updates)
  return state._replace(step=state.step + 1, params=params, opt_state=opt_state), loss


def evaluate(model, state: TrainState, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 10000) -> dict:
  """Mean cross-entropy and accuracy over a whole split."""
  @jax.jit
  def sums(params, x, y):
    logits = model.apply({"params": params, "quant": state.quant}, x)
    return (optax.softmax_cross_entropy_with_integer_labels(logits, y).sum(),
            (logits.argmax(-1) == y).sum())
  loss = correct = 0.0
  for start in range(0, len(labels), batch_size):
    x = images[start:start + batch_size].astype(np.float32) / 255.0
    l, c = sums(state.params, x, labels[start:start + batch_size])
    loss, correct = loss + float(l), correct + float(c)
  return {"loss": loss / len(labels), "accuracy": correct / len(labels)}


def params_sha256(params) -> str:
  """SHA-256 of the parameters' bytes (leaves in tree order, with dtype and shape)."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    leaf = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape}".encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains per ``config``, writes metrics/summary/plot to ``workdir``, returns the summary."""
  config_lib.validate(config)
  os.makedirs(workdir, exist_ok=True)
  data = data_lib.load_image_dataset(config.dataset, config.data_dir or None, config.data_source)
  logging.info("Data: %s (%d train, %d test images)", data.source, len(data.train_labels),
               len(data.test_labels))
  print(f"data: {data.source}", flush=True)

  steps_per_epoch = len(data.train_labels) // config.batch_size
  if steps_per_epoch == 0:
    raise config_lib.ConfigError(f"config.batch_size {config.batch_size} exceeds the "
                                 f"{len(data.train_labels)} training images")
  total_steps = config.num_train_steps or config.num_epochs * steps_per_epoch
  model = models.get_model(config.model, bits=config.bits, ste=config.ste)
  state, tx = create_train_state(config, model,
                                 functools.partial(make_optimizer, config,
                                                   total_steps=total_steps),
                                 jnp.zeros((1, 28, 28), jnp.float32))
  step_fn = jax.jit(functools.partial(train_step, model=model, tx=tx,
                                      estimator=config.estimator), donate_argnums=0)
  writer = metrics_lib.MetricWriter(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json(indent=2))

  start, step, epoch_losses = time.time(), 0, []
  bar = tqdm(total=total_steps, desc=config.estimator, unit="step", dynamic_ncols=True)
  epoch = 0
  while step < total_steps:
    for images, labels in data_lib.batches(data.train_images, data.train_labels,
                                           config.batch_size, config.seed, epoch):
      state, loss = step_fn(state, images, labels)
      epoch_losses.append(loss)
      step += 1
      bar.update(1)
      if step % config.log_every_steps == 0:
        bar.set_postfix(loss=f"{float(loss):.4f}")
      if step == total_steps:
        break
    epoch += 1
    train = evaluate(model, state, data.train_images, data.train_labels)
    test = evaluate(model, state, data.test_images, data.test_labels)
    writer.write(step, {"epoch": epoch, "step_loss": float(jnp.mean(jnp.stack(epoch_losses))),
                        "train_loss": train["loss"], "train_accuracy": train["accuracy"],
                        "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                        "forward_passes": step * forward_passes_per_step(config)})
    epoch_losses = []
    bar.write(f"epoch {epoch}: train_loss {train['loss']:.4f}  test_loss {test['loss']:.4f}  "
              f"test_accuracy {100 * test['accuracy']:.2f}%")
  bar.close()
  writer.close()

  summary = {
      "estimator": config.estimator, "steps": step, "final_train_loss": train["loss"],
      "test_loss": test["loss"], "test_accuracy": test["accuracy"],
      "forward_passes": step * forward_passes_per_step(config),
      "wall_time_s": time.time() - start, "params_sha256": params_sha256(state.params),
      "num_perturbations": config.num_perturbations, "beta_min": config.beta_min,
      "ste": config.ste, "bits": config.bits, "seed": config.seed, "dataset": config.dataset,
      "data_source": data.source,
  }
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  metrics_lib.plot_run(workdir, title=f"{config.dataset} {config.model} {config.estimator}")
  print(f"test accuracy {100 * summary['test_accuracy']:.2f}%  test loss "
        f"{summary['test_loss']:.4f}  ({step} steps, {summary['wall_time_s']:.1f} s) → "
        f"{workdir}", flush=True)
  return summary
