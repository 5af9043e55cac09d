"""LLaMA training throughput (tokens/s), model FLOPs utilisation, and data-parallel scaling.

  python bench/throughput.py --size=95m --devices=1,2,4,8            # GPUs / TPUs (bf16)
  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
      python bench/throughput.py --devices=1,2,4,8                    # fake CPU devices

Times ``train.py``'s own ``train_step`` (compile excluded, ``block_until_ready``) on a mesh of
the first k devices, the state replicated (or split with ``--fsdp``) and the batch split over
the ``data`` axis exactly as ``train_and_evaluate`` does; weak scaling: the global batch is
``per_device_batch × k``. Fake CPU devices share the same cores, so there the table checks that
the sharded step runs and says what the partitioning costs, not real speed-up.

Model FLOPs per token and forward pass (PaLM's accounting, causal attention not halved):
    F = 2·N + 4·L·d·S        N = non-embedding parameters (blocks, norm and the head matmul),
                             L layers, d width, S sequence length;
a step costs F·T·P with T tokens and P the forward-pass equivalents of the estimator
(``loop.forward_passes_per_step``: STE 3 = forward + backward, FOGZO n adds 2n), so STE gives
the usual 6N + 12·L·d·S per token. MFU = model FLOP/s ÷ (k × the device's peak), the peak
read from ``PEAK_TFLOPS`` by device kind (dense bf16) or given with ``--peak_tflops``; on CPU it
is left out unless given.
"""

import os

import jax
import ml_collections
import numpy as np
from absl import app, flags

from fogzo_jax.train.sweep import load_config
from fogzo_jax.train import exits, loop, optim, sharding
import timing  # bench/timing.py, beside this script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SIZE = flags.DEFINE_string("size", "95m", "LLaMA size (configs/llama.py): 9m … 300m.")
_REDUCED = flags.DEFINE_enum("reduced", "auto", ["auto", "yes", "no"],
                             "Shrink to REDUCED (auto: on CPU only).")
_ESTIMATORS = flags.DEFINE_list("estimators", ["ste"], "Estimators: ste, fogzo (n = 1).")
_DEVICES = flags.DEFINE_list("devices", ["1"], "Device counts k (the first k devices).")
_PER_DEVICE_BATCH = flags.DEFINE_integer("per_device_batch", 16, "Sequences per device.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 256, "Tokens per sequence.")
_DTYPE = flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16"],
                           "Compute dtype (auto: bfloat16 on accelerators, float32 on CPU).")
_FSDP = flags.DEFINE_bool("fsdp", False, "Split parameters and optimizer state over devices.")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak TFLOP/s per device (0: from the table).")
_REPEATS = flags.DEFINE_integer("repeats", 20, "Timed steps per row (min 3).")
_OUT = flags.DEFINE_string("out", "bench_throughput.json", "JSON output path.")

REDUCED = dict(dim=128, layers=2, heads=2)  # the CPU size: LLaMA layout, width and depth cut

# Dense bf16 peak per device (vendor data sheets), matched as a substring of device_kind.
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "TPU v5p": 459.0,
               "TPU v5 lite": 197.0, "TPU v4": 275.0}


def peak_tflops(device_kind: str) -> float:
  """Dense bf16 TFLOP/s of one device (``--peak_tflops`` wins); 0 when unknown (CPU)."""
  if _PEAK.value:
    return _PEAK.value
  return next((v for k, v in PEAK_TFLOPS.items() if k in device_kind), 0.0)


def model_flops_per_token(params, layers: int, dim: int, seq_len: int) -> float:
  """F = 2·N + 4·L·d·S for one forward pass of one token (N without the embedding table)."""
  n = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(params)
          if "embed" not in jax.tree_util.keystr(path))
  return 2.0 * n + 4.0 * layers * dim * seq_len


def bench_config(estimator: str, reduced: bool, dtype: str) -> ml_collections.ConfigDict:
  config = load_config(os.path.join(ROOT, "configs", f"llama.py:{_SIZE.value}"))
  if reduced:
    config.model.update(REDUCED)
  config.estimator.update(kind=estimator, num_perturbations=1)
  config.model.dtype, config.data.seq_len, config.fsdp = dtype, _SEQ_LEN.value, _FSDP.value
  return config


def time_row(config, k: int, repeats: int) -> dict:
  """Median step time of ``config`` on the first k devices, and the model's FLOP count."""
  mesh = sharding.make_mesh(config.fsdp, jax.devices()[:k])
  batch_size, seq_len = _PER_DEVICE_BATCH.value * k, config.data.seq_len
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 257, (batch_size, seq_len + 1)).astype(np.int32)
  batch = jax.device_put({"inputs": tokens[:, :-1], "targets": tokens[:, 1:],
                          "segment_ids": np.ones((batch_size, seq_len), np.int32),
                          "weights": np.ones((batch_size, seq_len), np.float32)},
                         sharding.batch_sharding(mesh))
  model, tx = loop.make_model(config, {"vocab_size": 257}), loop.make_tx(config, 1000)
  state, shardings = loop.create_train_state(model, tx, "lm", batch, jax.random.key(0), mesh)
  step = loop.jit_train_step(config, model, tx, "lm", shardings, mesh)
  seconds, state, metrics = timing.median_step_seconds(step, state, batch, max(3, repeats))
  loss = float(metrics["loss"])
  if not np.isfinite(loss):
    raise FloatingPointError(f"{config.estimator.kind} on {k} devices: loss {loss}")
  return dict(step_s=seconds, batch=batch_size, loss=loss,
              flops_per_token=model_flops_per_token(state.params, config.model.layers,
                                                    config.model.dim, seq_len))


def main(argv):
  del argv
  with exits.one_line_errors("throughput.py"):  # a bad flag: one line, not the usage text
    measure()


def measure():
  device = jax.devices()[0]
  on_cpu = device.platform == "cpu"
  reduced = _REDUCED.value == "yes" or (_REDUCED.value == "auto" and on_cpu)
  dtype = _DTYPE.value if _DTYPE.value != "auto" else ("float32" if on_cpu else "bfloat16")
  counts = [int(k) for k in _DEVICES.value]
  if max(counts) > jax.device_count():
    raise app.UsageError(f"--devices: {max(counts)} > the {jax.device_count()} devices here "
                         "(on CPU: XLA_FLAGS=--xla_force_host_platform_device_count=N)")
  peak = peak_tflops(device.device_kind)
  rows = []
  for estimator in _ESTIMATORS.value:
    if estimator not in ("ste", "fogzo"):
      raise app.UsageError(f"--estimators: {estimator!r} is not one of ste, fogzo")
    config = bench_config(estimator, reduced, dtype)
    passes = optim.forward_passes(1, 1, **config.estimator)
    single = None
    for k in counts:
      r = time_row(config, k, _REPEATS.value)
      tokens = r["batch"] * config.data.seq_len
      flops_s = r["flops_per_token"] * tokens * passes / r["step_s"]
      single = single or tokens / r["step_s"] / k  # per-device tokens/s at the first count
      rows.append(dict(
          model=f"llama_{_SIZE.value}" + (f" (d {REDUCED['dim']}, {REDUCED['layers']} layers)"
                                          if reduced else ""),
          estimator=estimator, devices=k, batch=r["batch"], seq_len=config.data.seq_len,
          dtype=dtype, step_ms=1e3 * r["step_s"], tokens_per_s=tokens / r["step_s"],
          flops_per_token=r["flops_per_token"], forward_passes=passes,
          scaling_efficiency=tokens / r["step_s"] / (k * single),
          model_tflops_per_s=flops_s / 1e12,
          mfu=flops_s / (k * peak * 1e12) if peak else None, loss=r["loss"]))
      x = rows[-1]
      timing.save(_OUT.value, rows, peak_tflops=peak or None)  # a time limit keeps these rows
      mfu = f"{100 * x['mfu']:.1f} %" if x["mfu"] is not None else "n/a"
      print(f"{estimator:6s} k={k}  {x['step_ms']:9.1f} ms  {x['tokens_per_s']:10.0f} tok/s  "
            f"eff {x['scaling_efficiency']:.2f}  {x['model_tflops_per_s']:.3f} TFLOP/s  MFU {mfu}",
            flush=True)
  machine = timing.save(_OUT.value, rows, peak_tflops=peak or None)
  print("\n| model | estimator | devices | global batch × seq | dtype | step (ms) | tokens/s "
        "| scaling efficiency | model TFLOP/s | MFU |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for x in rows:
    mfu = f"{100 * x['mfu']:.1f} %" if x["mfu"] is not None else "n/a (no peak)"
    print(f"| {x['model']} | {x['estimator']} | {x['devices']} | {x['batch']} × {x['seq_len']} "
          f"| {x['dtype']} | {x['step_ms']:.1f} | {x['tokens_per_s']:,.0f} | "
          f"{x['scaling_efficiency']:.2f} | {x['model_tflops_per_s']:.3f} | {mfu} |")
  print(f"\nmachine: {machine}")


if __name__ == "__main__":
  app.run(main, flags_parser=exits.parse_flags)  # a bad flag: one line, exit 2
