"""Training of a quantized classifier with STE, FOGZO or n-SPSA: ``train_and_evaluate``.

One jitted ``train_step`` serves the three estimators (the choice is static):

  ste:   G = g (the STE gradient)                                     cost F + B
  fogzo: G = fz.fogzo(...).update(g, ..., value_fn=loss_fn, ...)      cost F + B + 2n·F
  nspsa: G = fz.nspsa(...).update(0, ..., value_fn=loss_fn, ...)      cost 2n·F

then θ ← AdamW(θ, G) with a cosine learning-rate schedule. ``forward_passes`` in the summary
counts these costs with B = 2F (the forward that n-SPSA runs only to log its loss is not counted,
as in the paper's accounting). With ``fogzo_start_fraction`` > 0 the first steps are plain STE.

Runs are resumable: orbax checkpoints hold the whole train state (parameters, optimizer and
estimator state with its PRNG key, step); the data order is a function of (seed, epoch), so the
step fixes the data position, and a killed run restarted with the same command ends with the
same parameters bit for bit (on CPU). SIGTERM saves a checkpoint before exiting; a NaN/Inf loss
stops the run without writing a checkpoint, so the last good one stays.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import signal
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
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


class Preempted(Exception):
  """SIGTERM arrived; a checkpoint was saved and the run can resume."""


class Diverged(Exception):
  """The loss became NaN/Inf; no checkpoint was written from the bad state."""


def fogzo_start_step(config, total_steps: int) -> int:
  return int(round(config.fogzo_start_fraction * total_steps))


def forward_passes(config, steps: int, total_steps: int) -> int:
  """Forward-pass equivalents of ``steps`` steps, counting a backward as 2."""
  n = config.num_perturbations
  if config.estimator == "nspsa":
    return 2 * n * steps
  if config.estimator == "ste":
    return 3 * steps
  ste_steps = min(steps, fogzo_start_step(config, total_steps))
  return 3 * steps + 2 * n * (steps - ste_steps)


def forward_passes_per_step(config) -> int:
  return forward_passes(config, 1, 1)


def make_optimizer(config, quant, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """chain(estimator, AdamW with cosine decay); the estimator is the identity for STE."""
  _, noise = fz.implicit_smoothing(config.ste)
  zo_args = dict(num_perturbations=config.num_perturbations,
                 epsilon=quant_epsilon(quant, config.ste), noise=noise, key=config.seed + 1,
                 chunk_size=config.chunk_size or None)
  if config.estimator == "fogzo":
    start = fogzo_start_step(config, total_steps)
    estimator = fz.fogzo(beta=fz.linear_beta(config.beta_min, total_steps - start),
                         g_hat_norm=config.g_hat_norm, **zo_args)
    if start > 0:
      estimator = fz.start_at(start, estimator)
  elif config.estimator == "nspsa":
    estimator = fz.nspsa(**zo_args)
  else:
    estimator = optax.identity()
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
    loss = loss_fn(state.params, images, labels)
    grads = jax.tree.map(jnp.zeros_like, state.params)
  else:
    loss, grads = jax.value_and_grad(loss_fn)(state.params, images, labels)
  updates, opt_state = tx.update(grads, state.opt_state, state.params, value_fn=loss_fn,
                                 images=images, labels=labels)
  params = optax.apply_updates(state.params, updates)
  return state._replace(step=state.step + 1, params=params, opt_state=opt_state), loss


@functools.partial(jax.jit, static_argnums=0)
def _eval_sums(model, variables, x, y):
  logits = model.apply(variables, x)
  return (optax.softmax_cross_entropy_with_integer_labels(logits, y).sum(),
          (logits.argmax(-1) == y).sum())


def evaluate(model, state: TrainState, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 10000) -> dict:
  """Mean cross-entropy and accuracy over a whole split (uint8 images)."""
  variables = {"params": state.params, "quant": state.quant}
  loss = correct = 0.0
  for start in range(0, len(labels), batch_size):
    x = images[start:start + batch_size].astype(np.float32) / 255.0
    l, c = _eval_sums(model, variables, x, labels[start:start + batch_size])
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


def _prepare_workdir(config, workdir: str, force: bool) -> None:
  """Refuses a workdir that holds a run of an incompatible config (unless ``force``)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  new = json.loads(config.to_json())
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    bad = config_lib.incompatible_fields(old, new)
    if bad and not force:
      raise config_lib.ConfigError(
          f"workdir {workdir} holds a run with a different config (fields: "
          f"{', '.join(f'{k}: {old.get(k)!r} → {new.get(k)!r}' for k in bad)}); use another "
          "workdir, or --force to start this config afresh there")
    if bad:  # --force: the old run's checkpoints and metrics go
      for name in ("checkpoints", "metrics.jsonl", "summary.json", "tensorboard"):
        target = os.path.join(workdir, name)
        if os.path.isdir(target):
          shutil.rmtree(target)
        elif os.path.exists(target):
          os.remove(target)
  with open(path, "w") as f:
    json.dump(new, f, indent=2)


def _truncate_metrics(path: str, step: int) -> None:
  """Drops rows written after the checkpoint a resumed run restarts from."""
  if os.path.exists(path):
    rows = [r for r in metrics_lib.read_jsonl(path) if r["step"] <= step]
    with open(path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)


def _is_finite(loss, params) -> bool:
  return bool(jnp.isfinite(loss)) and all(bool(jnp.all(jnp.isfinite(x)))
                                          for x in jax.tree.leaves(params))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       force: bool = False) -> dict:
  """Trains per ``config`` (resuming from ``workdir``'s latest checkpoint), writes metrics,
  ``summary.json`` and ``curves.png`` to ``workdir``, returns the summary."""
  config_lib.validate(config)
  if config.distributed:
    jax.distributed.initialize()
  mesh = Mesh(np.array(jax.devices()), ("data",))
  if config.batch_size % mesh.size:
    raise config_lib.ConfigError(f"config.batch_size {config.batch_size} must be divisible by "
                                 f"the number of devices ({mesh.size})")
  data = data_lib.load_image_dataset(config.dataset, config.data_dir or None, config.data_source)
  steps_per_epoch = len(data.train_labels) // config.batch_size
  if steps_per_epoch == 0:
    raise config_lib.ConfigError(f"config.batch_size {config.batch_size} exceeds the "
                                 f"{len(data.train_labels)} training images")
  lead = jax.process_index() == 0
  logging.info("Data: %s", data.source)
  if lead:
    _prepare_workdir(config, workdir, force)
    print(f"data: {data.source}", flush=True)

  total_steps = config.num_train_steps or config.num_epochs * steps_per_epoch
  model = models.get_model(config.model, bits=config.bits, ste=config.ste)
  state, tx = create_train_state(
      config, model, functools.partial(make_optimizer, config, total_steps=total_steps),
      jnp.zeros((1, 28, 28), jnp.float32))
  replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  # Every process draws the same global batch (same seed) and feeds its own contiguous rows.
  per_process = config.batch_size // jax.process_count()
  local = slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)
  state = jax.device_put(state, replicated)
  step_fn = jax.jit(functools.partial(train_step, model=model, tx=tx,
                                      estimator=config.estimator), donate_argnums=0)

  ckpt = ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")),
      options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True))
  if ckpt.latest_step() is not None:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    state = ckpt.restore(ckpt.latest_step(), args=ocp.args.StandardRestore(abstract))
    if lead:
      print(f"resumed from step {int(state.step)}", flush=True)
  step = int(state.step)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  writer = None
  if lead:
    _truncate_metrics(metrics_path, step)
    writer = metrics_lib.MetricWriter(workdir)

  def save(state, loss):
    if not _is_finite(loss, state.params):
      raise Diverged(f"loss is {float(loss)} at step {int(state.step)}: stopped; the last good "
                     f"checkpoint (step {ckpt.latest_step()}) is intact")
    ckpt.save(int(state.step), args=ocp.args.StandardSave(state))

  preempted = []
  previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
  start, losses, train, test = time.time(), [], None, None
  bar = tqdm(total=total_steps, initial=step, desc=config.estimator, unit="step",
             dynamic_ncols=True, disable=not lead)
  try:
    while step < total_steps:
      epoch, first = divmod(step, steps_per_epoch)
      for images, labels in data_lib.batches(data.train_images, data.train_labels,
                                             config.batch_size, config.seed, epoch, first):
        images, labels = (jax.make_array_from_process_local_data(batch_sharding, x[local])
                          for x in (images, labels))
        state, loss = step_fn(state, images, labels)
        losses.append(loss)
        step += 1
        bar.update(1)
        if step % config.log_every_steps == 0:
          if not np.isfinite(float(loss)):
            raise Diverged(f"loss is {float(loss)} at step {step}: stopped; the last good "
                           f"checkpoint (step {ckpt.latest_step()}) is intact")
          bar.set_postfix(loss=f"{float(loss):.4f}")
        end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
        if (config.eval_every_steps and step % config.eval_every_steps == 0) or (
            not config.eval_every_steps and end_of_epoch):
          train = evaluate(model, state, data.train_images, data.train_labels)
          test = evaluate(model, state, data.test_images, data.test_labels)
          if lead:
            writer.write(step, {
                "epoch": step / steps_per_epoch,
                "step_loss": float(jnp.mean(jnp.stack(losses))),
                "train_loss": train["loss"], "train_accuracy": train["accuracy"],
                "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                "forward_passes": forward_passes(config, step, total_steps)})
            bar.write(f"step {step} (epoch {step / steps_per_epoch:.2f}): train_loss "
                      f"{train['loss']:.4f}  test_loss {test['loss']:.4f}  test_accuracy "
                      f"{100 * test['accuracy']:.2f}%")
          losses = []
        if (config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0) \
            or step == total_steps:
          save(state, loss)
        if preempted:
          save(state, loss)
          ckpt.wait_until_finished()
          raise Preempted(f"SIGTERM at step {step}: checkpoint saved; rerun the same command "
                          "to resume")
        if step == total_steps:
          break
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
    bar.close()
    ckpt.wait_until_finished()
    ckpt.close()
    if writer:
      writer.close()

  if train is None:  # finished before this invocation: evaluate the restored state
    train = evaluate(model, state, data.train_images, data.train_labels)
    test = evaluate(model, state, data.test_images, data.test_labels)
  summary = {
      "estimator": config.estimator, "steps": step, "final_train_loss": train["loss"],
      "test_loss": test["loss"], "test_accuracy": test["accuracy"],
      "forward_passes": forward_passes(config, step, total_steps),
      "wall_time_s": time.time() - start, "params_sha256": params_sha256(state.params),
      "num_perturbations": config.num_perturbations, "beta_min": config.beta_min,
      "fogzo_start_fraction": config.fogzo_start_fraction, "ste": config.ste,
      "bits": config.bits, "seed": config.seed, "dataset": config.dataset,
      "data_source": data.source, "devices": mesh.size,
  }
  if lead:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    metrics_lib.plot_run(workdir, title=f"{config.dataset} {config.model} {config.estimator}")
    print(f"test accuracy {100 * summary['test_accuracy']:.2f}%  test loss "
          f"{summary['test_loss']:.4f}  ({step} steps, {summary['wall_time_s']:.1f} s) → "
          f"{workdir}", flush=True)
  return summary
