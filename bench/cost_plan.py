"""What every paper config costs, before any GPU: XLA's compiled memory and FLOPs of the step.

  python bench/cost_plan.py --out=docs/bench/cost_plan.json          # every config (8 fake devices)
  python bench/cost_plan.py --configs=mnist_mlp,llama_9m --estimators=ste,fogzo

Compiles, never runs, train.py's own jitted step (``loop.jit_train_step``) of each paper config
at its real size and batch, from abstract shapes (``jax.eval_shape``; no parameter is
allocated), for STE, FOGZO n = 1 (vmapped and sequential ± pair) and n-SPSA n = 16, in float32
and bfloat16, on 1 device and with FSDP on 8 devices (fake CPU devices: this script sets
``--xla_force_host_platform_device_count=8``; per-device numbers). Per row: FLOPs of the step
(``cost_analysis``; on 8 devices, one device's share; for LLaMA and DeiT, whose blocks are one
``nn.scan`` and so counted once by XLA, extrapolated from depth 1 and 2: ``scanned_cost``) and
the FOGZO/STE ratio against the ideal (F + B + 2F)/(F + B) = 5/3; argument, temp and output
bytes (``memory_analysis``, per device) and their sum (the peak the step needs, without the
runtime's own overhead); whether that fits 11 GB (RTX 2080 Ti), 32 GB (RTX 5090) and 80 GB
(A100/H100); and the compile time.

It also measures FOGZO's memory over STE against its bound: each simultaneous perturbed
evaluation needs one perturbed copy of the perturbed weights plus one forward's activations
(without the ones kept for the backward), i.e. k·P + A with k = 2 (vmapped ± pair) or 1
(sequential), P the perturbed weights' bytes and A the temp bytes of a compiled forward alone.
"""

import os
import sys

# Only as a script: imported (by a test), it must not change the environment that later
# subprocesses inherit.
if __name__ == "__main__" and \
    "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8").strip()

import json  # noqa: E402  pylint: disable=wrong-import-position
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402

from fogzo_jax.quant import layers as quant_layers  # noqa: E402
from fogzo_jax.train import exits, loop, optim, sharding  # noqa: E402
from fogzo_jax.train.sweep import apply_overrides, load_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GB = 1e9
CARDS = {"11 GB": 11, "32 GB": 32, "80 GB": 80}

# name: (config spec, classes or vocabulary of the paper's data)
PAPER_CONFIGS = {
    "mnist_mlp": ("mnist_mlp.py", {"num_classes": 10}),
    "resnet18": ("resnet18_in100.py", {"num_classes": 100}),
    "resnet50_lsq": ("resnet50_in1k_lsq.py", {"num_classes": 1000}),
    "deit_tiny": ("deit_tiny_in100.py", {"num_classes": 100}),
    "deit_small_lsq": ("deit_small_in1k_lsq.py", {"num_classes": 1000}),
    **{f"llama_{s}": (f"llama.py:{s}", {"vocab_size": 32000})  # the LLaMA tokenizer on C4
       for s in ("9m", "20m", "30m", "95m", "200m", "300m")},
}
ESTIMATORS = {
    "ste": ["estimator.kind=ste"],
    "fogzo": ["estimator.kind=fogzo", "estimator.evaluation=vmap"],
    "fogzo_seq": ["estimator.kind=fogzo", "estimator.evaluation=sequential"],
    "nspsa16": ["estimator.kind=nspsa", "estimator.num_perturbations=16",
                "estimator.evaluation=vmap"],
}



def define_flags():
  """The command line (defined only when run as a script: the functions are importable)."""
  flags.DEFINE_list("configs", list(PAPER_CONFIGS), "Paper configs to compile.")
  flags.DEFINE_list("estimators", list(ESTIMATORS), "Estimators.")
  flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute/parameter dtypes.")
  flags.DEFINE_list("devices", ["1", "8"], "1 (one device) and/or 8 (FSDP).")
  flags.DEFINE_string("out", "bench_cost_plan.json", "JSON output path.")
  flags.DEFINE_list("merge", [], "Compile nothing: merge these outputs of earlier runs (--out "
                    "JSON, or their printed row lines; a later file's row replaces an earlier "
                    "one) into --out.")
  flags.DEFINE_string("markdown", "", "Also write the tables (summary + every row) here.")


def config_for(name: str, estimator: str, dtype: str, devices: int):
  spec, _ = PAPER_CONFIGS[name]
  config = load_config(os.path.join(ROOT, "configs", spec))
  apply_overrides(config, ESTIMATORS[estimator] + [f"fsdp={devices > 1}"])
  if "dtype" in config.model:
    config.model.update(dtype=dtype, param_dtype=dtype)
  return config


def abstract_batch(config, task: str, model_args: dict, mesh):
  """ShapeDtypeStructs of one global batch of the config (sharded like train.py's)."""
  b, sh = config.data.batch_size, sharding.batch_sharding(mesh)
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sh)
  if task == "lm":
    t = config.data.seq_len
    return {"inputs": spec((b, t), jnp.int32), "targets": spec((b, t), jnp.int32),
            "segment_ids": spec((b, t), jnp.int32), "weights": spec((b, t), jnp.float32)}
  size = config.data.image_size or {"mnist": 28}.get(config.data.name, 224)
  channels = 1 if config.data.name in ("mnist", "fashion_mnist") else 3
  return {"image": spec((b, size, size, channels), jnp.float32),
          "label": spec((b,), jnp.int32)}


def compile_step(config, model_args: dict, mesh):
  """(compiled step, abstract state) of ``config`` on ``mesh``, from abstract shapes only."""
  model, tx = loop.make_model(config, model_args), loop.make_tx(config, total_steps=1000)
  task = "lm" if "vocab_size" in model_args else "image"
  batch = abstract_batch(config, task, model_args, mesh)
  key = jax.random.key(0)
  shardings = loop.state_shardings(model, tx, task, batch, key, mesh)
  shapes = jax.eval_shape(lambda b: loop.create_train_state(model, tx, task, b, key, mesh)[0],
                          batch)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       shapes, shardings)
  step = loop.jit_train_step(config, model, tx, task, shardings, mesh)
  return step.lower(state, batch).compile(), state, model, task, batch


def forward_temp_bytes(model, task, state, batch) -> float:
  """Temp bytes of one compiled forward of the loss (no backward): A of the bound."""
  def loss(params, quant, batch_stats, batch):
    variables = {"params": params, "quant": quant, "batch_stats": batch_stats}
    logits, _ = loop.apply_model(model, task, variables, batch, train=True)
    return loop.per_example_loss(task, logits, batch)[0].mean()
  compiled = jax.jit(loss).lower(state.params, state.quant, state.batch_stats, batch).compile()
  return float(compiled.memory_analysis().temp_size_in_bytes)


def perturbed_bytes(state, config, devices: int) -> float:
  """P: bytes of the quantized (perturbed) weights, per device."""
  mask = quant_layers.quantized_mask(state.params, state.quant)
  total = sum(x.size * x.dtype.itemsize for x, m in zip(jax.tree.leaves(state.params),
                                                        jax.tree.leaves(mask)) if m)
  return float(total) / (devices if config.fsdp else 1)


def _cost(compiled) -> dict:
  cost = compiled.cost_analysis()
  return cost[0] if isinstance(cost, (list, tuple)) else cost


def scanned_cost(config, model_args: dict, mesh) -> dict:
  """FLOPs and bytes accessed of a model whose blocks are one ``nn.scan`` (LLaMA, DeiT).

  XLA's cost analysis counts the body of a loop once, not once per iteration, so the scanned
  step's own numbers miss all blocks but one. Every block is the same, so the cost is linear in
  the depth L: compile depth 1 and depth 2 (unrolled: no loop) and extrapolate,
  cost(L) = cost(1) + (L − 1)·(cost(2) − cost(1)).
  """
  field = "layers" if "layers" in config.model else "depth"
  depth, costs = config.model[field], []
  for k in (1, 2):
    small = config.copy_and_resolve_references()
    small.model.update({field: k, "scan_unroll": k})
    costs.append(_cost(compile_step(small, model_args, mesh)[0]))
  return {key: costs[0].get(key, 0.0) + (depth - 1) * (costs[1].get(key, 0.0)
                                                       - costs[0].get(key, 0.0))
          for key in ("flops", "bytes accessed")}


def row(name: str, estimator: str, dtype: str, devices: int) -> dict:
  config = config_for(name, estimator, dtype, devices)
  mesh = sharding.make_mesh(config.fsdp, jax.devices()[:devices])
  start = time.time()
  compiled, state, model, task, batch = compile_step(config, PAPER_CONFIGS[name][1], mesh)
  seconds = time.time() - start
  mem, cost = compiled.memory_analysis(), _cost(compiled)
  field = "layers" if "layers" in config.model else "depth"
  if field in config.model and config.model.get("scan_unroll", 1) < config.model[field]:
    cost = scanned_cost(config, PAPER_CONFIGS[name][1], mesh)  # blocks in a loop: extrapolate
  total = mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes \
      - mem.alias_size_in_bytes
  out = dict(config=name, estimator=estimator, dtype=dtype, devices=devices,
             batch=config.data.batch_size, flops=float(cost.get("flops", 0.0)),
             bytes_accessed=float(cost.get("bytes accessed", 0.0)),
             argument_gb=mem.argument_size_in_bytes / GB, temp_gb=mem.temp_size_in_bytes / GB,
             output_gb=mem.output_size_in_bytes / GB, alias_gb=mem.alias_size_in_bytes / GB,
             total_gb=total / GB, compile_s=seconds,
             forward_passes=optim.forward_passes(1, 1, **config.estimator),
             fits={card: total / GB <= size for card, size in CARDS.items()})
  if estimator.startswith("fogzo"):
    out["perturbed_gb"] = perturbed_bytes(state, config, devices) / GB
    out["forward_temp_gb"] = forward_temp_bytes(model, task, state, batch) / GB
    out["evaluations_at_once"] = 2 if estimator == "fogzo" else 1
  print(json.dumps(out), flush=True)
  return out


def with_ratios(rows: list) -> list:
  """Adds FOGZO/STE FLOP ratios and FOGZO's extra memory against its bound."""
  ste = {(r["config"], r["dtype"], r["devices"]): r for r in rows if r["estimator"] == "ste"}
  for r in rows:
    base = ste.get((r["config"], r["dtype"], r["devices"]))
    if base is None or r["estimator"] == "ste":
      continue
    r["flop_ratio"] = r["flops"] / base["flops"] if base["flops"] else None
    r["ideal_ratio"] = r["forward_passes"] / 3
    if "perturbed_gb" in r:
      r["extra_gb"] = r["total_gb"] - base["total_gb"]
      r["bound_gb"] = r["evaluations_at_once"] * r["perturbed_gb"] + r["forward_temp_gb"]
  return rows


def markdown(rows: list) -> str:
  lines = ["| config | estimator | dtype | devices | GFLOP/step (per device) | × STE (ideal) | "
           "args + temp + out (GB/device) | total GB | fits 11 / 32 / 80 GB | extra over STE "
           "/ bound (GB) | compile (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    ratio = (f"{r['flop_ratio']:.2f} ({r['ideal_ratio']:.2f})" if r.get("flop_ratio")
             else "–")
    fits = " / ".join("yes" if r["fits"][c] else "no" for c in CARDS)
    extra = (f"{r['extra_gb']:.3g} / {r['bound_gb']:.3g}" if "extra_gb" in r else "–")
    lines.append(
        f"| {r['config']} | {r['estimator']} | {r['dtype']} | {r['devices']} | "
        f"{r['flops'] / 1e9:,.3g} | {ratio} | {r['argument_gb']:.3g} + {r['temp_gb']:.3g} + "
        f"{r['output_gb']:.3g} | {r['total_gb']:.3g} | {fits} | {extra} | {r['compile_s']:.0f} |")
  return "\n".join(lines) + "\n"


def _order(r: dict) -> tuple:
  return (r["devices"], r["dtype"] != "float32", list(PAPER_CONFIGS).index(r["config"])
          if r["config"] in PAPER_CONFIGS else len(PAPER_CONFIGS), r["config"],
          list(ESTIMATORS).index(r["estimator"]) if r["estimator"] in ESTIMATORS else 99)


def merge(paths: list) -> list:
  """Rows of several outputs (a run's --out JSON, or the rows it printed one per line: a run
  stopped early keeps those), one per (config, estimator, dtype, devices), in table order,
  ratios recomputed."""
  rows = {}
  for path in paths:
    with open(path) as f:
      text = f.read()
    try:
      found = json.loads(text)["rows"]
    except json.JSONDecodeError:  # the rows a run printed, one per line, before it was stopped
      found = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    if not found:
      raise ValueError(f"no cost_plan rows in {path}")
    for r in found:
      rows[(r["config"], r["estimator"], r["dtype"], r["devices"])] = r
  return with_ratios(sorted(rows.values(), key=_order))


def default_fogzo(config: str) -> str:
  """The ESTIMATORS row of a paper config's own FOGZO evaluation ("fogzo" vmapped, or
  "fogzo_seq" where the config evaluates the ± pair sequentially)."""
  spec, _ = PAPER_CONFIGS[config]
  evaluation = load_config(os.path.join(ROOT, "configs", spec)).estimator.evaluation
  return "fogzo_seq" if evaluation == "sequential" else "fogzo"


def summary_markdown(rows: list, fogzo_of=lambda config: "fogzo") -> str:
  """One line per (config, dtype, devices): the four estimators side by side; "fits" takes
  FOGZO's row of ``fogzo_of(config)`` (the config's own evaluation: ``default_fogzo``)."""
  lines = ["| config | dtype | devices | STE TFLOP/step/device "
           "| FOGZO × STE FLOPs, vmap; seq (ideal 1.67) | "
           "GB/device: STE / FOGZO / FOGZO seq / n-SPSA 16 | FOGZO extra / bound GB (vmap; seq) | "
           "STE, FOGZO (config's evaluation) fit 11 / 32 / 80 GB |",
           "|---|---|---|---|---|---|---|---|"]
  groups = {}
  for r in rows:
    groups.setdefault((r["config"], r["dtype"], r["devices"]), {})[r["estimator"]] = r
  for (config, dtype, devices), by in groups.items():
    ste, fz, seq = by.get("ste"), by.get("fogzo"), by.get("fogzo_seq")
    gb = " / ".join(f"{by[e]['total_gb']:.3g}" if e in by else "–" for e in ESTIMATORS)
    bound = "; ".join(f"{x['extra_gb']:.3g} / {x['bound_gb']:.3g}" for x in (fz, seq)
                      if x and "extra_gb" in x) or "–"
    own = by.get(fogzo_of(config))
    fits = ("–" if not (ste and own) else " / ".join(
        ("yes" if ste["fits"][c] else "no") + ("" if own["fits"][c] == ste["fits"][c] else
                                               (", FOGZO yes" if own["fits"][c] else ", FOGZO no"))
        for c in CARDS))
    tflops = f"{ste['flops'] / 1e12:.3g}" if ste else "–"
    ratios = "; ".join(f"{x['flop_ratio']:.2f}" if x and x.get("flop_ratio") else "–"
                       for x in (fz, seq))
    lines.append(f"| {config} | {dtype} | {devices} | {tflops} | {ratios} | {gb} | {bound} | "
                 f"{fits} |")
  return "\n".join(lines) + "\n"


def write(rows: list, out: str, markdown_path: str, **machine) -> None:
  """The JSON (rows + the machine) to ``out``; both tables to stdout and ``markdown_path``."""
  with open(out, "w") as f:
    json.dump(dict(machine=dict(jax=jax.__version__, backend=jax.default_backend(), **machine),
                   rows=rows), f, indent=1)
  text = summary_markdown(rows, default_fogzo) + "\n" + markdown(rows)
  if markdown_path:
    with open(markdown_path, "w") as f:
      f.write(text)
  print(text)


def main(argv):
  del argv
  with exits.one_line_errors("cost_plan.py"):  # a bad flag: one line, not the usage text
    plan(flags.FLAGS)


def plan(f):
  if f.merge:
    try:
      rows = merge(f.merge)
    except (OSError, ValueError, KeyError) as e:  # a missing file, or not a cost_plan output
      sys.exit(f"cost_plan --merge: cannot read {f.merge}: {e!r}; pass the --out JSON files "
               "(or the printed output) of cost_plan runs")
    write(rows, f.out, f.markdown, merged_from=[os.path.basename(p) for p in f.merge])
    return
  if jax.device_count() < max(int(d) for d in f.devices):
    raise app.UsageError(f"--devices needs {max(int(d) for d in f.devices)} devices; "
                         f"{jax.device_count()} here (XLA_FLAGS was set before jax loaded?)")
  rows = []
  for name in f.configs:
    if name not in PAPER_CONFIGS:
      raise app.UsageError(f"--configs: {name!r} is not one of {', '.join(PAPER_CONFIGS)}")
    for devices in (int(d) for d in f.devices):
      for dtype in f.dtypes:
        for estimator in f.estimators:
          rows.append(row(name, estimator, dtype, devices))
  write(with_ratios(rows), f.out, f.markdown, devices=jax.device_count(),
        python=sys.version.split()[0])


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=exits.parse_flags)  # a bad flag: one line, exit 2
