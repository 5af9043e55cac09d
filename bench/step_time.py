"""Median jitted train-step time of STE vs FOGZO vs n-SPSA, measured side by side in one run.

  python bench/step_time.py --models=mlp [--fogzo_n=1,2,4,16] [--nspsa_n=1,100,7960]

Times the same ``train_step`` that ``train.py`` uses (compile excluded, ``block_until_ready``),
on random MNIST-shaped batches, and prints a table with the ratio to STE plus a JSON file.
Peak memory: process peak RSS on CPU (``ru_maxrss``, whole process), device peak bytes on GPU.
"""

import functools
import json
import os
import platform
import resource
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import mnist_mlp  # noqa: E402  (the repo's configs/ folder)
from fogzo_jax.train import loop

_MODELS = flags.DEFINE_list("models", ["mlp"], "Models to time (mlp).")
_FOGZO_N = flags.DEFINE_list("fogzo_n", ["1", "2", "4", "16"], "FOGZO n values.")
_NSPSA_N = flags.DEFINE_list("nspsa_n", ["1", "100", "1000", "7960"], "n-SPSA n values.")
_BATCH = flags.DEFINE_integer("batch_size", 512, "Batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 50, "Timed steps per row (min 5).")
_OUT = flags.DEFINE_string("out", "bench_step_time.json", "JSON output path.")


def peak_memory_mb() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2 ** 20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_step(config, images, labels, repeats: int) -> float:
  model = loop.build_model(config, {"num_classes": 10})
  state, tx = loop.create_train_state(
      config, model, functools.partial(loop.make_optimizer, config, total_steps=1000), images)
  step = jax.jit(functools.partial(loop.train_step, model=model, tx=tx, task="image",
                                   estimator=config.estimator), donate_argnums=0)
  batch = {"image": images, "label": labels}
  state, loss = step(state, batch)  # compile
  jax.block_until_ready(loss)
  times = []
  for _ in range(max(5, repeats)):
    t = time.perf_counter()
    state, loss = step(state, batch)
    jax.block_until_ready((state, loss))
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.random((_BATCH.value, 28, 28)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, _BATCH.value), jnp.int32)
  rows = []
  for model_name in _MODELS.value:
    runs = [("ste", 1)] + [("fogzo", int(n)) for n in _FOGZO_N.value] + \
           [("nspsa", int(n)) for n in _NSPSA_N.value]
    base = None
    for estimator, n in runs:
      config = mnist_mlp.get_config()
      config.model, config.estimator, config.num_perturbations = model_name, estimator, n
      repeats = _REPEATS.value if n < 1000 else 5
      t = time_step(config, images, labels, repeats)
      base = base or t
      rows.append(dict(model=model_name, estimator=estimator, n=n, step_ms=1e3 * t,
                       ratio_to_ste=t / base, peak_mem_mb=peak_memory_mb(),
                       forward_passes=loop.forward_passes_per_step(config),
                       ideal_ratio=loop.forward_passes_per_step(config) / 3))
      r = rows[-1]
      print(f"{model_name:6s} {estimator:6s} n={n:<5d} {r['step_ms']:9.3f} ms  "
            f"x{r['ratio_to_ste']:7.2f} (ideal x{r['ideal_ratio']:.2f})  "
            f"peak {r['peak_mem_mb']:.0f} MB", flush=True)
  machine = dict(platform=platform.platform(), processor=platform.processor(),
                 device=str(jax.devices()[0]), device_kind=jax.devices()[0].device_kind,
                 jax=jax.__version__, batch_size=_BATCH.value)
  with open(_OUT.value, "w") as f:
    json.dump(dict(machine=machine, rows=rows), f, indent=2)
  print("\n| model | estimator | n | step (ms) | × STE | ideal × STE (F+B=3F) | peak mem (MB) |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['model']} | {r['estimator']} | {r['n']} | {r['step_ms']:.3f} | "
          f"{r['ratio_to_ste']:.2f} | {r['ideal_ratio']:.2f} | {r['peak_mem_mb']:.0f} |")
  print(f"\nmachine: {machine}")


if __name__ == "__main__":
  app.run(main)
