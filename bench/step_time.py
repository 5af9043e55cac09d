"""Median jitted train-step time of STE vs FOGZO vs n-SPSA, measured side by side in one run.

  python bench/step_time.py --models=mlp [--fogzo_n=1,2,4,16] [--nspsa_n=1,100,7960]
  python bench/step_time.py --models=mlp,resnet18,deit_tiny,llama_30m   # reduced widths on CPU

Times the same ``train_step`` that ``train.py`` uses (compile excluded, ``block_until_ready``),
on random batches of each model's input shape, and prints a table with the ratio to STE plus a
JSON file. ``--size=auto`` uses reduced widths on CPU and the full models on an accelerator
(``BENCH_MODELS`` says both). Peak memory: process peak RSS on CPU (``ru_maxrss``, whole
process, so it only grows down the table), device peak bytes on GPU.
"""

import os
import resource

import jax
import numpy as np
from absl import app, flags

from fogzo_jax.train.sweep import load_config
from fogzo_jax.train import exits, loop, optim, sharding
from fogzo_jax.train.config import default_config
import timing  # bench/timing.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_MODELS = flags.DEFINE_list("models", ["mlp"], "Models: mlp, resnet18, deit_tiny, llama_30m.")
_FOGZO_N = flags.DEFINE_list("fogzo_n", ["1", "2", "4", "16"], "FOGZO n values.")
_NSPSA_N = flags.DEFINE_list("nspsa_n", ["1", "100", "1000", "7960"],
                             "n-SPSA n values of the MLP; the other models use 1 and 16. "
                             "Empty: no n-SPSA row for any model.")
_SIZE = flags.DEFINE_enum("size", "auto", ["auto", "reduced", "full"],
                          "Model size: reduced widths on CPU, full on GPU/TPU by default.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype.")
_EVALUATION = flags.DEFINE_list("evaluation", ["vmap"],
                                "Perturbed-forward evaluation(s) to time: vmap, sequential.")
_DIFFERENCE = flags.DEFINE_list(
    "fogzo_difference", ["loss"], "FOGZO's difference(s) to time: loss (the paper's), "
    "ste_linear (ours: the STE's linear prediction, no perturbed forward).")
_GRADIENT_NOISE = flags.DEFINE_bool(
    "gradient_noise", False, "Also time the gradient-noise control (ours, ρ 0.3; no perturbed "
    "forward).")
_SKIP_ZERO = flags.DEFINE_bool(
    "skip_zero_grad", False, "Also time the ste_linear FOGZO rows and the gradient-noise row "
    "with skip_zero_grad=True (ours: no noise where the STE gradient is 0).")
_REPEATS = flags.DEFINE_integer("repeats", 50, "Timed steps per row (min 5).")
_CHUNK = flags.DEFINE_integer("chunk_size", 0, "Perturbations vmapped at once (0: the config's).")
_OUT = flags.DEFINE_string("out", "bench_step_time.json", "JSON output path.")

# model: (task, input shape without batch, batch, model_kwargs reduced, model_kwargs full)
BENCH_MODELS = {
    "mlp": ("image", (28, 28, 1), 512, {}, {}),
    "resnet18": ("image", (32, 32, 3), 64, dict(width=16), {}),
    "deit_tiny": ("image", (32, 32, 3), 64, dict(hidden=96, depth=4, heads=3), {}),
    "llama_30m": ("lm", (128,), 16, dict(dim=128, layers=2, heads=2), {}),
}
FULL_INPUTS = {"resnet18": ((224, 224, 3), 128), "deit_tiny": ((224, 224, 3), 128),
               "llama_30m": ((256,), 64)}


def peak_memory_mb() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2 ** 20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bench_config(name: str, full: bool):
  if name == "mlp":
    config = load_config(os.path.join(ROOT, "configs", "mnist_mlp.py"))
  else:
    config = default_config()
    config.model = {"name": name, "dtype": _DTYPE.value,
                    **BENCH_MODELS[name][4 if full else 3]}
    config.quant.update(kind="fixed", bits=2)
  return config


def make_batch(name: str, full: bool):
  task, shape, batch, _, _ = BENCH_MODELS[name]
  if full and name in FULL_INPUTS:
    shape, batch = FULL_INPUTS[name]
  rng = np.random.default_rng(0)
  if task == "lm":
    tokens = rng.integers(0, 257, (batch, shape[0] + 1)).astype(np.int32)
    return task, {"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                  "segment_ids": np.ones((batch, shape[0]), np.int32),
                  "weights": np.ones((batch, shape[0]), np.float32)}
  return task, {"image": rng.random((batch, *shape), np.float32),
                "label": rng.integers(0, 10, batch).astype(np.int32)}


def time_step(config, task, batch, repeats: int) -> float:
  """The median time of train.py's own jitted step (``loop.jit_train_step``) on one device."""
  model = loop.make_model(config, {"vocab_size": 257} if task == "lm" else {"num_classes": 10})
  tx = loop.make_tx(config, total_steps=1000)
  mesh = sharding.make_mesh(fsdp=False, devices=jax.devices()[:1])
  batch = jax.device_put(batch)
  state, shardings = loop.create_train_state(model, tx, task, batch, jax.random.key(0), mesh)
  step = loop.jit_train_step(config, model, tx, task, shardings, mesh)
  seconds, _, _ = timing.median_step_seconds(step, state, batch, max(5, repeats))
  return seconds


def main(argv):
  del argv
  with exits.one_line_errors("step_time.py"):  # a bad flag: one line, not the usage text
    measure()


def measure():
  on_cpu = jax.devices()[0].platform == "cpu"
  full = _SIZE.value == "full" or (_SIZE.value == "auto" and not on_cpu)
  rows = []
  bad = sorted(set(_DIFFERENCE.value) - {"loss", "ste_linear"})
  if bad:
    raise app.UsageError(f"--fogzo_difference: {bad[0]!r} is not one of loss, ste_linear")
  for name in _MODELS.value:
    if name not in BENCH_MODELS:
      raise app.UsageError(f"--models: {name!r} is not one of {', '.join(BENCH_MODELS)}")
    task, batch = make_batch(name, full)
    nspsa_n = _NSPSA_N.value if name == "mlp" or not _NSPSA_N.value else ["1", "16"]
    # (estimator, n, evaluation, difference, skip_zero_grad); ste_linear evaluates no perturbed
    # loss, so it is timed once per n, not once per evaluation
    skips = (False, True) if _SKIP_ZERO.value else (False,)
    runs = [("ste", 1, "vmap", "loss", False)] + [
        (est, int(n), ev, "loss", False) for ev in _EVALUATION.value
        for est, ns in (("fogzo", _FOGZO_N.value), ("nspsa", nspsa_n)) for n in ns
        if est == "nspsa" or "loss" in _DIFFERENCE.value] + [
        ("fogzo", int(n), "", "ste_linear", skip) for n in _FOGZO_N.value
        if "ste_linear" in _DIFFERENCE.value for skip in skips] + (
        [("gradient_noise", 1, "", "", skip) for skip in skips] if _GRADIENT_NOISE.value else [])
    base = None
    for estimator, n, evaluation, difference, skip in runs:
      config = bench_config(name, full)
      config.estimator.update(kind=estimator, num_perturbations=n,
                              evaluation=evaluation or "vmap")
      if difference == "ste_linear":
        config.estimator.difference = difference
      if estimator == "gradient_noise" or skip:  # the study's noise share
        config.estimator.noise_share = 0.3
      if skip:
        config.estimator.skip_zero_grad = True
      if _CHUNK.value:
        config.estimator.chunk_size = _CHUNK.value
      repeats = _REPEATS.value if n < 1000 else 5
      t = time_step(config, task, batch, repeats)
      base = base or t
      rows.append(dict(model=name, size="full" if full else "reduced", estimator=estimator, n=n,
                       evaluation=evaluation if estimator != "ste" else "",
                       difference=difference if estimator == "fogzo" else "",
                       skip_zero_grad=skip,
                       chunk_size=config.estimator.chunk_size,
                       batch=len(next(iter(batch.values()))), step_ms=1e3 * t,
                       ratio_to_ste=t / base, peak_mem_mb=peak_memory_mb(),
                       forward_passes=optim.forward_passes(1, 1, **config.estimator),
                       ideal_ratio=optim.forward_passes(1, 1, **config.estimator) / 3))
      r = rows[-1]
      print(f"{name:9s} {estimator:6s} n={n:<5d} {r['evaluation']:10s} {r['difference']:10s} "
            f"{'skip0' if skip else '':5s} "
            f"{r['step_ms']:9.3f} ms  "
            f"x{r['ratio_to_ste']:7.2f} (ideal x{r['ideal_ratio']:.2f})  "
            f"peak {r['peak_mem_mb']:.0f} MB", flush=True)
      timing.save(_OUT.value, rows, dtype=_DTYPE.value)  # a kill keeps the finished rows
  machine = timing.save(_OUT.value, rows, dtype=_DTYPE.value)
  print("\n| model | size | batch | estimator | n | evaluation | difference | skip_zero_grad "
        "| step (ms) | × STE | ideal × STE (F+B=3F) | peak mem (MB) |")
  print("|---|---|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['size']} | {r['batch']} | {r['estimator']} | {r['n']} | "
          f"{r['evaluation']} | {r['difference']} | {'yes' if r['skip_zero_grad'] else ''} | "
          f"{r['step_ms']:.3f} | {r['ratio_to_ste']:.2f} | {r['ideal_ratio']:.2f} | "
          f"{r['peak_mem_mb']:.0f} |")
  print(f"\nmachine: {machine}")


if __name__ == "__main__":
  app.run(main, flags_parser=exits.parse_flags)  # a bad flag: one line, exit 2
