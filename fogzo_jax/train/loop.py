"""Training of a quantized model with STE, FOGZO or n-SPSA: ``train_and_evaluate``.

Data flows one way: config → constructors (``make_pipeline(**config.data)``,
``get_model(**config.model)``, ``make_estimator(**config.estimator)``, ``make_optimizer(…)``)
→ the jitted ``train_step``. One ``train_step`` serves the three estimators:

  ste:   G = g (the STE gradient)                                     cost F + B
  fogzo: G = fz.fogzo(...).update(g, ..., value_fn=loss_fn, ...)      cost F + B + 2n·F
  nspsa: G = fz.nspsa(...).update(None, ..., value_fn=loss_fn, ...)   cost 2n·F

then θ ← AdamW(θ, G). ε and the perturbation mask are computed inside the step from the state's
``quant`` collection (the quantizer steps), passed to the estimator as ``quant=state.quant``.

Runs are resumable and safe: one run per workdir (a lock), checkpoints (``checkpoints.py``) hold
the train state, the data iterator's position and a checksum, and a resumed run ends with the
same parameters bit for bit; SIGTERM/SIGINT save a checkpoint and stop; a non-finite loss or
update stops the run before it is checkpointed. Metrics of step t are read once step t+1 is
dispatched, so the host never waits for the device on the hot path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import signal
import time
from typing import Any, NamedTuple

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from tqdm import tqdm

from fogzo_jax import data as data_lib
from fogzo_jax import models
from fogzo_jax.quant.layers import QuantSpec
from fogzo_jax.train import checkpoints as ckpt_lib
from fogzo_jax.train import config as config_lib
from fogzo_jax.train import metrics as metrics_lib
from fogzo_jax.train import optim
from fogzo_jax.train import sharding
from fogzo_jax.train import workdir as workdir_lib

_READ_THREADS = min(8, os.cpu_count() or 1)
# grain uses at most prefetch_buffer_size of the threads (and warns when it is smaller)
READ_OPTIONS = grain.ReadOptions(num_threads=_READ_THREADS,
                                 prefetch_buffer_size=max(4, _READ_THREADS))


class TrainState(NamedTuple):
  step: jax.Array
  params: Any          # trainable latent weights θ (and learned LSQ steps, norms, …)
  quant: Any           # quantizer records: frozen fixed-scale α, init steps (marks quantized θ)
  batch_stats: Any     # BatchNorm running statistics ({} for models without BatchNorm)
  opt_state: Any       # estimator state (count, PRNG key) + AdamW state


class Preempted(Exception):
  """SIGTERM or SIGINT arrived; a checkpoint was saved and the run can resume."""


class Diverged(Exception):
  """The loss or the update became NaN/Inf; no checkpoint was written from the bad state."""


def make_model(config, model_args: dict) -> nn.Module:
  """``config.model`` + ``spec`` from ``config.quant`` + ``num_classes``/``vocab_size`` (data)."""
  return models.get_model(**config.model, spec=QuantSpec(**config.quant), **model_args)


def make_tx(config, total_steps: int) -> optax.GradientTransformationExtraArgs:
  """chain(estimator of ``config.estimator``, AdamW of ``config.optimizer``)."""
  spec = QuantSpec(**config.quant)
  return optax.chain(
      optim.make_estimator(**config.estimator, total_steps=total_steps, key=config.seed + 1,
                           spec=spec),
      optim.make_optimizer(**config.optimizer, total_steps=total_steps, key=config.seed + 2,
                           spec=spec))


def model_inputs(task: str, batch: dict) -> tuple:
  return (batch["inputs"], batch["segment_ids"]) if task == "lm" else (batch["image"],)


def _init_variables(model, key, *inputs):
  return model.init(key, *inputs, train=False)


def state_shardings(model, tx, task: str, batch: dict, key, mesh) -> TrainState:
  """The train state's shardings (``sharding.py``), from abstract shapes only (``eval_shape``)."""
  abstract = jax.eval_shape(functools.partial(_init_variables, model), key,
                            *model_inputs(task, batch))
  var_sh = sharding.variable_shardings(abstract, mesh)
  params = nn.unbox(abstract)["params"]
  opt_sh = sharding.opt_state_shardings(tx, jax.eval_shape(tx.init, params), var_sh["params"],
                                        mesh)
  return TrainState(sharding.replicated(mesh), var_sh["params"], var_sh.get("quant", {}),
                    var_sh.get("batch_stats", {}), opt_sh)


def create_train_state(model, tx, task: str, batch: dict, key, mesh) -> tuple[TrainState, Any]:
  """The initial state, built sharded on the devices from a real batch (activation steps are
  initialised from it, LSQ's rule), and its shardings."""
  shardings = state_shardings(model, tx, task, batch, key, mesh)

  @functools.partial(jax.jit, out_shardings=shardings)
  def init(key, batch):
    variables = nn.unbox(_init_variables(model, key, *model_inputs(task, batch)))
    return TrainState(jnp.zeros([], jnp.int32), variables["params"], variables.get("quant", {}),
                      variables.get("batch_stats", {}), tx.init(variables["params"]))
  return init(key, batch), shardings


def per_example_loss(task: str, logits, batch, label_smoothing: float = 0.0):
  """(loss [B] or [B, T], correct [B] or [B, T], weights) for a batch dict."""
  labels = batch["targets"] if task == "lm" else batch["label"]
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
  out = model.apply(variables, *model_inputs(task, batch), train=train, mutable=mutable)
  return out if mutable else (out, {"batch_stats": variables.get("batch_stats", {})})


def train_step(state: TrainState, batch, *, model, tx, task: str, estimator: str,
               label_smoothing: float = 0.0):
  """One optimisation step; returns the new state and metrics (loss at θ, ‖update‖).

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
    (loss, batch_stats), grads = loss_fn(state.params, batch), None
  else:
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
  updates, opt_state = tx.update(grads, state.opt_state, state.params, value_fn=value_fn,
                                 batch=batch, quant=state.quant)
  new = state._replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       batch_stats=batch_stats, opt_state=opt_state)
  return new, {"loss": loss, "update_norm": optax.tree.norm(updates)}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_sums(model, task, variables, batch):
  logits, _ = apply_model(model, task, variables, batch, train=False)
  loss, correct, w = per_example_loss(task, logits, batch)
  return jnp.sum(loss * w), jnp.sum(correct * w), jnp.sum(w)


def evaluate(model, task: str, state: TrainState, eval_set, put=lambda b: b) -> dict:
  """Weighted mean loss and accuracy (per example, or per token for LMs) over an eval set."""
  variables = {"params": state.params, "quant": state.quant, "batch_stats": state.batch_stats}
  sums = [jnp.zeros([], jnp.float32)] * 3
  for batch in eval_set.to_iter_dataset(READ_OPTIONS):  # sums stay on the device
    sums = [a + b for a, b in zip(sums, _eval_sums(model, task, variables, put(batch)))]
  loss, correct, count = (float(x) for x in sums)
  if count == 0:
    raise data_lib.DataError("the evaluation set has no examples with weight > 0")
  return {"loss": loss / count, "accuracy": correct / count}


def params_sha256(params) -> str:
  """SHA-256 of the parameters' bytes (leaves in tree order, with dtype and shape); leaves
  sharded across processes are gathered first."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = multihost_utils.process_allgather(leaf, tiled=True)
    leaf = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}:{leaf.dtype}:{leaf.shape}".encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


def _host(step: int, metrics: dict) -> dict:
  """Reads a step's metrics; a non-finite loss or update stops the run (``Diverged``)."""
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  bad = [k for k in ("loss", "update_norm") if not np.isfinite(values[k])]
  if bad:
    what = "the loss" if "loss" in bad else "the update (the parameters would be)"
    raise Diverged(f"{what} became {values[bad[0]]} at step {step} (loss {values['loss']:.4g}, "
                   f"‖update‖ {values['update_norm']:.4g})")
  return values


@contextlib.contextmanager
def _stop_signals():
  """Yields a list that SIGTERM / SIGINT append their number to (the loop saves and stops)."""
  caught, previous = [], {}
  for sig in (signal.SIGTERM, signal.SIGINT):
    previous[sig] = signal.signal(sig, lambda num, _: caught.append(num))
  try:
    yield caught
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       force: bool = False) -> dict:
  """Trains per ``config`` (resuming from ``workdir``), writes metrics, ``summary.json`` and
  ``curves.png`` to ``workdir``, and returns the summary."""
  config_lib.validate(config)  # before anything is read or written
  if config.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize()  # cluster auto-detection (SLURM, TPU pods, env variables)
  lead = jax.process_index() == 0
  lock = workdir_lib.lock(workdir) if lead else None
  try:
    return _train(config, workdir, force, lead)
  finally:
    if lock:
      lock.close()


class Run(NamedTuple):
  """Everything a training run is built from its config (``build``)."""
  data: data_lib.Pipeline
  model: nn.Module
  tx: optax.GradientTransformationExtraArgs
  mesh: Any
  shardings: TrainState
  put: Any             # this process's rows of a batch → global arrays sharded over the mesh
  step_fn: Any         # jitted train_step(state, batch) → (state, metrics), donates the state
  total_steps: int


def build(config) -> tuple[Run, TrainState]:
  """config → constructors → the jitted step and the initial state (``config`` validated)."""
  mesh = sharding.make_mesh(config.fsdp)
  if config.data.batch_size % mesh.size or config.data.eval_batch_size % mesh.size:
    raise config_lib.ConfigError(f"config.data.batch_size and eval_batch_size must be divisible "
                                 f"by the number of devices ({mesh.size})")
  data = data_lib.make_pipeline(**config.data, seed=config.seed,
                                process_index=jax.process_index(),
                                process_count=jax.process_count(),
                                total_steps=config.num_train_steps)
  total_steps = config.num_train_steps or config.num_epochs * data.steps_per_epoch
  model, tx = make_model(config, data.model_args), make_tx(config, total_steps)
  batch_sharding = sharding.batch_sharding(mesh)

  def put(batch):
    return {k: jax.make_array_from_process_local_data(batch_sharding, v)
            for k, v in batch.items()}

  state, shardings = create_train_state(model, tx, data.task, put(data.train[0]),
                                        jax.random.key(config.seed), mesh)
  step_fn = jit_train_step(config, model, tx, data.task, shardings, mesh)
  return Run(data, model, tx, mesh, shardings, put, step_fn, total_steps), state


def jit_train_step(config, model, tx, task: str, shardings: TrainState, mesh):
  """``train_step`` of ``config``, jitted with the state donated and its shardings kept."""
  return jax.jit(functools.partial(train_step, model=model, tx=tx, task=task,
                                   estimator=config.estimator.kind,
                                   label_smoothing=config.label_smoothing),
                 donate_argnums=0, out_shardings=(shardings, sharding.replicated(mesh)))


def _train(config, workdir: str, force: bool, lead: bool) -> dict:
  run, state = build(config)
  data, model, put, total_steps = run.data, run.model, run.put, run.total_steps
  if lead:
    workdir_lib.prepare(config.to_dict(), workdir, force)
    print(f"data: {data.info['source']}", flush=True)
  iterator = iter(data.train.to_iter_dataset(READ_OPTIONS))
  ckpts = ckpt_lib.Checkpoints(workdir, config.keep_checkpoints)
  restored = ckpts.restore(jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      x.shape, x.dtype, sharding=x.sharding), state), iterator)
  step, wall_before = 0, 0.0
  if restored:
    state, step, wall_before = restored.state, restored.step, restored.wall_time_s
    for bad, reason in restored.rejected:
      print(f"checkpoint step {bad} skipped: {reason}", flush=True)
    if lead:
      print(f"resumed from step {step}", flush=True)
  writer = metrics_lib.MetricWriter(workdir, truncate_after=step) if lead else None
  row_every = config.eval_every_steps or data.steps_per_epoch
  due = lambda every: bool(every) and step % every == 0  # pylint: disable=unnecessary-lambda-assignment
  start, pending, losses, row = time.time(), None, [], None
  try:
    with _stop_signals() as stop, tqdm(total=total_steps, initial=step, unit="step",
                                       desc=config.estimator.kind, disable=not lead,
                                       dynamic_ncols=True) as bar:
      while step < total_steps:
        state, metrics = run.step_fn(state, put(next(iterator)))
        if pending:  # step t−1's metrics, read while step t runs
          losses.append(_host(*pending)["loss"])
        step, pending = step + 1, (step + 1, metrics)
        bar.update(1)
        done = step == total_steps
        eval_due, save_due = done or due(row_every), done or bool(stop) or due(
            config.checkpoint_every_steps)
        if eval_due or save_due or due(config.log_every_steps):  # and before saving
          losses.append(_host(*pending)["loss"])
          pending = None
          bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if eval_due:
          row = {"epoch": step / data.steps_per_epoch, "step_loss": float(np.mean(losses)),
                 **_eval_metrics(model, data, state, put, step),
                 "forward_passes": optim.forward_passes(step, total_steps, **config.estimator)}
          losses = []
          if writer:
            writer.write(step, row)
            bar.write(f"step {step}: " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                                                   if k not in ("epoch", "forward_passes")))
            if data.skipped:
              bar.write(f"skipped {len(data.skipped)} unreadable example(s) so far (listed in "
                        f"train.log), e.g. {sorted(data.skipped)[0]}")
        if save_due:
          ckpts.save(step, state, iterator, wall_before + time.time() - start)
        if stop and not done:
          ckpts.wait()
          raise Preempted(f"{signal.Signals(stop[0]).name} at step {step}: checkpoint saved; "
                          "rerun the same command to resume")
    ckpts.wait()
  except Diverged as e:
    latest = ckpts.latest_step()
    raise Diverged(f"{e}: stopped; " + (f"the newest checkpoint (step {latest}) is from before "
                                        "it" if latest is not None else
                                        "no checkpoint was written")) from None
  finally:
    ckpts.close()
    if writer:
      writer.close()
  final = row or _eval_metrics(model, data, state, put, step)  # finished before: evaluate
  return _summary(config, workdir, data, state, final, step, total_steps,
                  wall_before + time.time() - start, run.mesh, run.shardings, lead)


def _eval_metrics(model, data, state, put, step: int) -> dict:
  results = {name: evaluate(model, data.task, state, ds, put)
             for name, ds in data.eval_sets.items()}
  if data.task == "lm":
    val = results["validation"]
    return {"val_loss": val["loss"], "val_perplexity": float(np.exp(val["loss"])),
            "val_accuracy": val["accuracy"], "tokens_seen": step * data.info["tokens_per_batch"]}
  out = {"test_loss": results["test"]["loss"], "test_accuracy": results["test"]["accuracy"]}
  if "train" in results:
    out.update(train_loss=results["train"]["loss"], train_accuracy=results["train"]["accuracy"])
  return out


def _summary(config, workdir, data, state, final, step, total_steps, wall_time_s, mesh,
             shardings, lead) -> dict:
  final = {k: v for k, v in final.items() if k not in ("epoch", "step_loss", "forward_passes")}
  if "train_loss" in final:
    final["final_train_loss"] = final.pop("train_loss")
  summary = {
      "estimator": config.estimator.kind, "model": config.model.name, "steps": step, **final,
      "forward_passes": optim.forward_passes(step, total_steps, **config.estimator),
      "wall_time_s": wall_time_s, "params_sha256": params_sha256(state.params),
      "seed": config.seed, "dataset": config.data.name, "data_source": data.info["source"],
      "devices": mesh.size,
      "sharded_leaves": sum(not s.is_fully_replicated for s in jax.tree.leaves(shardings)),
      "skipped_examples": len(data.skipped),
  }
  if lead:
    metrics_lib.write_summary(workdir, summary)
    metrics_lib.plot_run(workdir, title=f"{config.data.name} {config.model.name} "
                                        f"{config.estimator.kind}")
    headline = (f"val perplexity {summary['val_perplexity']:.3f}" if data.task == "lm" else
                f"test accuracy {100 * summary['test_accuracy']:.2f}%  test loss "
                f"{summary['test_loss']:.4f}")
    print(f"{headline}  ({step} steps, {wall_time_s:.1f} s) → {workdir}", flush=True)
  return summary
