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
from fogzo_jax.models.vit import ViT, resolve_patch_size
from fogzo_jax.quant.layers import QuantSpec, epsilon_from_params, quantized_mask
from fogzo_jax.train import config as config_lib
from fogzo_jax.train import metrics as metrics_lib


class TrainState(NamedTuple):
  step: jax.Array
  params: Any          # trainable latent weights θ (and learned LSQ steps, norms, …)
  quant: Any           # quantizer records: frozen fixed-scale α, init steps (marks quantized θ)
  batch_stats: Any     # BatchNorm running statistics ({} for models without BatchNorm)
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


def quant_spec(config) -> QuantSpec:
  return QuantSpec(kind=config.quant, bits=config.bits, ste=config.ste,
                   activations=config.quantize_activations, bias=config.quantize_bias,
                   per_channel=config.quantize_per_channel)


def build_model(config, info: dict):
  """The model of ``config`` with the data's classes / vocabulary."""
  fields = models.model_fields(config.model)
  kwargs = dict(config.model_kwargs)
  kwargs["spec"] = quant_spec(config)
  if "num_classes" in fields:
    kwargs.setdefault("num_classes", info["num_classes"])
  if "vocab_size" in fields:
    kwargs["vocab_size"] = info["vocab_size"]
  if "quantize_first_last" in fields:
    kwargs["quantize_first_last"] = config.quantize_first_last
  if "dtype" in fields:
    kwargs["dtype"] = jnp.dtype(config.dtype)
  if "param_dtype" in fields:
    kwargs["param_dtype"] = jnp.dtype(config.param_dtype)
  model = models.get_model(config.model, **kwargs)
  size = info.get("image_size")
  if size and isinstance(model, ViT):
    patch = resolve_patch_size(model.patch_size, size)
    if size % patch:
      raise config_lib.ConfigError(
          f"config.image_size {size} is not divisible by the patch size {patch} of "
          f"{config.model}; use a multiple of {patch} (or set model_kwargs.patch_size)")
  return model


def make_optimizer(config, quant, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """chain(estimator, AdamW with (warm-up +) cosine decay); the estimator is the identity for STE.

  FOGZO/n-SPSA perturb the quantized weights only (``quantized_mask``) with ε = α·ε̄(ste)
  (``epsilon_from_params``: α read from the current parameters for LSQ and QuEST).
  """
  spec = quant_spec(config)
  _, noise = fz.implicit_smoothing(config.ste)
  zo_args = dict(num_perturbations=config.num_perturbations,
                 epsilon=functools.partial(epsilon_from_params, quant=quant, spec=spec),
                 mask=functools.partial(quantized_mask, quant=quant), noise=noise,
                 key=config.seed + 1, chunk_size=config.chunk_size or None,
                 evaluation=config.evaluation)
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
  warmup = min(config.warmup_steps, total_steps // 2)  # short runs: at most half is warm-up
  if warmup:
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup,
                                                  total_steps)
  else:
    schedule = optax.cosine_decay_schedule(config.learning_rate, total_steps)
  return optax.chain(estimator, optax.adamw(schedule, weight_decay=config.weight_decay))


def create_train_state(config, model, tx_fn, sample) -> tuple[TrainState, Any]:
  variables = model.init(jax.random.key(config.seed), sample, train=False)
  quant = variables.get("quant", {})
  tx = tx_fn(quant)
  state = TrainState(step=jnp.zeros([], jnp.int32), params=variables["params"], quant=quant,
                     batch_stats=variables.get("batch_stats", {}),
                     opt_state=tx.init(variables["params"]))
  return state, tx


def per_example_loss(task: str, logits, batch, label_smoothing: float = 0.0):
  """(loss [B] or [B, T], correct [B] or [B, T], weights) for a batch dict."""
  if task == "lm":
    labels = batch["targets"]
    weights = batch["weights"]
  else:
    labels = batch["label"]
    weights = batch.get("weights", jnp.ones(labels.shape, jnp.float32))
  if "label_probs" in batch or label_smoothing:
    probs = batch.get("label_probs")
    if probs is None:
      probs = jax.nn.one_hot(labels, logits.shape[-1])
    probs = probs * (1 - label_smoothing) + label_smoothing / logits.shape[-1]
    loss = optax.softmax_cross_entropy(logits, probs)
  else:
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return loss, (logits.argmax(-1) == labels), weights


def apply_model(model, task, variables, batch, train: bool):
  """Logits and the new BatchNorm statistics (train mode); {} when the model has none."""
  mutable = ["batch_stats"] if train and variables.get("batch_stats") else False
  args = (batch["inputs"], batch["segment_ids"]) if task == "lm" else (batch["image"],)
  out = model.apply(variables, *args, train=train, mutable=mutable)
  return out if mutable else (out, {"batch_stats": variables.get("batch_stats", {})})


def train_step(state: TrainState, batch, *, model, tx, estimator: str, task: str,
               label_smoothing: float = 0.0):
  """One optimisation step; returns the new state and the loss at θ (before the update).

  BatchNorm runs in training mode in every forward, but only the STE forward's batch
  statistics update the running averages: the perturbed forwards of FOGZO/n-SPSA (``value_fn``)
  discard theirs (the paper's rule).
  """
  def loss_fn(params, batch):
    variables = {"params": params, "quant": state.quant, "batch_stats": state.batch_stats}
    logits, new = apply_model(model, task, variables, batch, train=True)
    loss, _, w = per_example_loss(task, logits, batch, label_smoothing)
    return jnp.sum(loss * w) / jnp.maximum(jnp.sum(w), 1.0), new["batch_stats"]

  def value_fn(params, batch):  # perturbed forwards: their batch statistics are dropped
    return loss_fn(params, batch)[0]

  if estimator == "nspsa":
    loss, batch_stats = loss_fn(state.params, batch)
    grads = jax.tree.map(jnp.zeros_like, state.params)
  else:
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
  updates, opt_state = tx.update(grads, state.opt_state, state.params, value_fn=value_fn,
                                 batch=batch)
  params = optax.apply_updates(state.params, updates)
  return state._replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                        opt_state=opt_state), loss


@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_sums(model, task, variables, batch):
  logits, _ = apply_model(model, task, variables, batch, train=False)
  loss, correct, w = per_example_loss(task, logits, batch)
  return jnp.sum(loss * w), jnp.sum(correct * w), jnp.sum(w)


def evaluate(model, task: str, state: TrainState, eval_set, put=lambda b: b) -> dict:
  """Weighted mean loss and accuracy (per example, or per token for LMs) over an eval set."""
  variables = {"params": state.params, "quant": state.quant, "batch_stats": state.batch_stats}
  sums = [jnp.zeros([], jnp.float32)] * 3
  for batch, _ in eval_set():  # sums stay on the device; one host transfer at the end
    sums = [a + b for a, b in zip(sums, _eval_sums(model, task, variables, put(batch)))]
  loss, correct, count = (float(x) for x in sums)
  return {"loss": loss / max(count, 1.0), "accuracy": correct / max(count, 1.0)}


def state_shardings(state, mesh: Mesh, fsdp: bool):
  """Replicated leaves, or with ``fsdp`` each leaf split along its largest axis that the device
  count divides (parameters and optimizer moments alike; XLA inserts the all-gathers)."""
  def sharding(x):
    if fsdp:
      for axis in sorted(range(jnp.ndim(x)), key=lambda a: -x.shape[a]):
        if x.shape[axis] >= mesh.size and x.shape[axis] % mesh.size == 0:
          return NamedSharding(mesh, P(*[("data" if a == axis else None)
                                         for a in range(x.ndim)]))
    return NamedSharding(mesh, P())
  return jax.tree.map(sharding, state)


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
  if config.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize()  # cluster auto-detection (SLURM, TPU pods, env variables)
  mesh = Mesh(np.array(jax.devices()), ("data",))
  for field in ("batch_size", "eval_batch_size"):
    if config[field] % mesh.size:
      raise config_lib.ConfigError(f"config.{field} {config[field]} must be divisible by the "
                                   f"number of devices ({mesh.size})")
  lead = jax.process_index() == 0
  data = data_lib.make_pipeline(config, jax.process_index(), jax.process_count(),
                                total_steps=config.num_train_steps)
  task = data.task
  logging.info("Data: %s", data.info["source"])
  if lead:
    _prepare_workdir(config, workdir, force)
    print(f"data: {data.info['source']}", flush=True)

  steps_per_epoch = data.steps_per_epoch
  total_steps = config.num_train_steps or config.num_epochs * steps_per_epoch
  model = build_model(config, data.info)
  state, tx = create_train_state(
      config, model, functools.partial(make_optimizer, config, total_steps=total_steps),
      jnp.asarray(data.sample))
  replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  shardings = state_shardings(state, mesh, config.fsdp)
  state = jax.device_put(state, shardings)

  def put(batch):  # this process's rows → one global array sharded over the data axis
    return {k: jax.make_array_from_process_local_data(batch_sharding, v)
            for k, v in batch.items()}

  step_fn = jax.jit(functools.partial(train_step, model=model, tx=tx, task=task,
                                      estimator=config.estimator,
                                      label_smoothing=config.label_smoothing),
                    donate_argnums=0, out_shardings=(shardings, replicated))

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

  def run_eval() -> dict:
    """{split: {loss, accuracy}} over every eval set."""
    return {name: evaluate(model, task, state, eval_set, put)
            for name, eval_set in data.eval_sets.items()}

  def eval_metrics(results: dict) -> dict:
    if task == "lm":
      val = results["validation"]
      return {"val_loss": val["loss"], "val_perplexity": float(np.exp(val["loss"])),
              "val_accuracy": val["accuracy"],
              "tokens_seen": step * data.info["tokens_per_batch"]}
    out = {"test_loss": results["test"]["loss"], "test_accuracy": results["test"]["accuracy"]}
    if "train" in results:
      out.update(train_loss=results["train"]["loss"], train_accuracy=results["train"]["accuracy"])
    return out

  preempted = []
  previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
  start, losses, results = time.time(), [], None
  bar = tqdm(total=total_steps, initial=step, desc=config.estimator, unit="step",
             dynamic_ncols=True, disable=not lead)
  try:
    # The prefetch thread also copies each batch to the devices while the previous step runs.
    for step_index, batch in data_lib.prefetch(lambda s: put(data.batch(s)), step, total_steps):
      state, loss = step_fn(state, batch)
      losses.append(loss)
      step = step_index + 1
      bar.update(1)
      if step % config.log_every_steps == 0:
        if not np.isfinite(float(loss)):
          raise Diverged(f"loss is {float(loss)} at step {step}: stopped; the last good "
                         f"checkpoint (step {ckpt.latest_step()}) is intact")
        bar.set_postfix(loss=f"{float(loss):.4f}")
      end_of_epoch = step % steps_per_epoch == 0 or step == total_steps
      if (config.eval_every_steps and (step % config.eval_every_steps == 0
                                       or step == total_steps)) or (
          not config.eval_every_steps and end_of_epoch):  # the last step is always evaluated
        results = run_eval()
        row = {"epoch": step / steps_per_epoch,
               "step_loss": float(jnp.mean(jnp.stack(losses))), **eval_metrics(results),
               "forward_passes": forward_passes(config, step, total_steps)}
        if lead:
          writer.write(step, row)
          bar.write(f"step {step} (epoch {step / steps_per_epoch:.2f}): " + "  ".join(
              f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "forward_passes")))
        losses = []
      if (config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0) \
          or step == total_steps:
        save(state, loss)
      if preempted:
        save(state, loss)
        ckpt.wait_until_finished()
        raise Preempted(f"SIGTERM at step {step}: checkpoint saved; rerun the same command "
                        "to resume")
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
    bar.close()
    ckpt.wait_until_finished()
    ckpt.close()
    if writer:
      writer.close()

  if results is None:  # finished before this invocation: evaluate the restored state
    results = run_eval()
  final = eval_metrics(results)
  if "train_loss" in final:
    final["final_train_loss"] = final.pop("train_loss")
  summary = {
      "estimator": config.estimator, "model": config.model, "steps": step, **final,
      "forward_passes": forward_passes(config, step, total_steps),
      "wall_time_s": time.time() - start, "params_sha256": params_sha256(state.params),
      "num_perturbations": config.num_perturbations, "beta_min": config.beta_min,
      "fogzo_start_fraction": config.fogzo_start_fraction, "quant": config.quant,
      "ste": config.ste, "bits": config.bits, "seed": config.seed, "dataset": config.dataset,
      "data_source": data.info["source"], "devices": mesh.size,
      "sharded_leaves": sum(not s.is_fully_replicated for s in jax.tree.leaves(shardings)),
  }
  if lead:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    metrics_lib.plot_run(workdir, title=f"{config.dataset} {config.model} {config.estimator}")
    headline = (f"val perplexity {summary['val_perplexity']:.3f}" if task == "lm" else
                f"test accuracy {100 * summary['test_accuracy']:.2f}%  test loss "
                f"{summary['test_loss']:.4f}")
    print(f"{headline}  ({step} steps, {summary['wall_time_s']:.1f} s) → {workdir}", flush=True)
  return summary
