"""Post-hoc: the quantized weights outside their quantizer's range, and what AdamW does with them.

  python experiments/clipped_weights.py runs/where_fogzo_helps/llama_9m_lsq/recipe/*_s10

For each finished run (its workdir: config.json and checkpoints/) the newest checkpoint's
quantized weights are read and, over all of them:

- ``clipped``: the share outside the range, where the STE's backward is 0 (fixed scale and LSQ:
  w/α below the lowest or above the highest level; QuEST: |Hw| beyond the outer level plus half
  a step, its trust mask — there, in the rotated basis, so the STE gradient of the weight itself
  is not 0);
- ``beyond_p90``: the 90th percentile of their distance past the range, in steps α;
- ``beyond_1``: the share of all weights more than one step past it;
- ``adam_clipped`` / ``adam_inside``: the mean of AdamW's |m|/√v on the clipped weights and on the
  others: near 0 when nothing moves them, about 0.2 for a random walk (m averages ±1 noise).

Amendment 23 of docs/results/where_fogzo_helps.md reads amendment 22's checkpoints with it.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fogzo_jax.quant import fixed, layers, lsq, quest

STATS = ("clipped", "beyond_p90", "beyond_1", "adam_clipped", "adam_inside")


def outside(weights, step, kind: str, bits: int):
  """(clipped mask, distance past the range in steps) of one quantized weight array with step
  ``step`` (``layers.weight_step_sizes``: α, or QuEST's Δ of the rotated columns)."""
  w, step = np.asarray(weights, np.float32), np.asarray(step, np.float32)
  if kind == "quest":  # the trust mask acts on the rotated weights; step: Δ per output column
    rotated = np.asarray(quest.rotate(jnp.asarray(w), axis=-2))
    past = np.abs(rotated) / step - 2 ** (bits - 1)  # outer level (L/2 − ½)·Δ plus half a step
    return past > 0, np.maximum(past, 0.0)
  lo, hi = lsq.lsq_levels(bits) if kind == "lsq" else fixed.levels(bits)
  y = w / step
  lo = -lo if kind == "lsq" else lo  # lsq_levels gives (Q_N, Q_P), the grid −Q_N … Q_P
  past = np.maximum(y - hi, lo - y)
  return past > 0, np.maximum(past, 0.0)


def summarize(clipped, past, mu, nu) -> dict:
  """The module docstring's statistics from flat arrays over all quantized weights."""
  ratio = np.abs(mu) / (np.sqrt(nu) + 1e-12)
  inside = ~clipped
  return dict(clipped=float(clipped.mean()),
              beyond_p90=float(np.quantile(past[clipped], 0.9)) if clipped.any() else 0.0,
              beyond_1=float((past > 1).mean()),
              adam_clipped=float(ratio[clipped].mean()) if clipped.any() else float("nan"),
              adam_inside=float(ratio[inside].mean()) if inside.any() else float("nan"))


def adam_moments(opt_state):
  """The (mu, nu) trees of the first AdamW state found in a restored optimizer state."""
  if isinstance(opt_state, dict):
    if "mu" in opt_state and "nu" in opt_state:
      return opt_state["mu"], opt_state["nu"]
    children = opt_state.values()
  elif isinstance(opt_state, (list, tuple)):
    children = opt_state
  else:
    return None
  for child in children:
    found = adam_moments(child)
    if found is not None:
      return found
  return None


def run_stats(workdir: str) -> dict:
  """The statistics of ``workdir``'s newest checkpoint (see the module docstring)."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  with open(os.path.join(workdir, "config.json")) as f:
    config = json.load(f)
  spec = layers.QuantSpec(**config["quant"])
  if spec.kind == "none":
    raise ValueError(f"{workdir}: quant.kind is 'none', nothing is quantized")
  steps = [int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit()]
  if not steps:
    raise ValueError(f"{workdir} has no checkpoint")
  path = os.path.join(os.path.abspath(workdir), "checkpoints", str(max(steps)), "state")
  state = ocp.StandardCheckpointer().restore(path)
  params, quant = state["params"], state.get("quant", {})
  mu, nu = adam_moments(state["opt_state"])
  sizes = layers.weight_step_sizes(params, quant, spec)
  parts = []
  for w, a, m, v in zip(*(jax.tree.leaves(t, is_leaf=lambda x: x is None)
                          for t in (params, sizes, mu, nu))):
    if a is not None:
      clipped, past = outside(w, a, spec.kind, spec.bits)
      parts.append((clipped.ravel(), past.ravel(), np.asarray(m).ravel(), np.asarray(v).ravel()))
  if not parts:
    raise ValueError(f"{workdir}: no quantized weight found in the checkpoint")
  return dict(step=max(steps), **summarize(*(np.concatenate(x) for x in zip(*parts))))


def main(argv) -> int:
  if not argv:
    print(__doc__.strip().splitlines()[2])
    return 2
  print("| run | step | " + " | ".join(STATS) + " |")
  print("|---|---|" + "---|" * len(STATS))
  for workdir in argv:
    try:
      r = run_stats(workdir)
    except (OSError, ValueError) as e:
      sys.exit(f"clipped_weights.py: {e} (give the workdirs of runs, each with config.json "
               "and checkpoints/)")
    print(f"| {workdir.rstrip('/')} | {r['step']} | "
          + " | ".join(f"{r[k]:.3g}" for k in STATS) + " |", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
