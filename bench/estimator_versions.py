"""Step time of the estimators: this checkout against an older one, side by side in one run.

  git worktree add /tmp/old 0ef8093     # the estimator before the optax rewrite
  python bench/estimator_versions.py --old=/tmp/old --out=docs/bench/estimator_versions.json

The same jitted step in both checkouts (only ``import fogzo_jax`` differs): the STE gradient of
a 2-bit quantized MLP (round-to-nearest with the identity STE, written here in plain jax so that
neither checkout's layers are involved), the estimator's update and ``optax.apply_updates``.
Rows: the paper's MNIST MLP 784-10-10 (d = 7,960, batch 512) and a wide MLP 784-1024-1024-10
(d ≈ 1.9 M, batch 256), for FOGZO n = 1 and n = 16 (β = 0.999) and n-SPSA n = 100. Each
checkout runs in its own subprocess (PYTHONPATH set to it); the two alternate ``--repeats``
times so both see the same machine state, and each reports the median of ``--steps`` timed steps
after compiling (bench/timing.py's rule, from this checkout in both). The ratio is this / old:
below 1 is faster. A bad flag or a failed measurement ends the script with one line and a
non-zero exit code; the rows measured before it stay in --out.
"""

import json
import os
import platform
import subprocess
import sys

from absl import app, flags

from fogzo_jax.train import exits
from fogzo_jax.train.workdir import write_atomic

from checkouts import HERE, require_positive, to_time  # bench/checkouts.py, beside this script

_OLD = flags.DEFINE_string("old", "", "Checkout of the older version ('' : only this one).")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per measurement.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Alternating repetitions (median reported).")
_OUT = flags.DEFINE_string("out", "bench_estimator_versions.json", "JSON output path.")

ROWS = [("mlp_784_10_10", "fogzo", 1), ("mlp_784_10_10", "fogzo", 16),
        ("mlp_784_10_10", "nspsa", 100), ("mlp_784_1024_1024_10", "fogzo", 1),
        ("mlp_784_1024_1024_10", "fogzo", 16)]

# Run with PYTHONPATH=<checkout>: prints the median step time in seconds.
SNIPPET = """
import sys
import jax, jax.numpy as jnp, optax
import fogzo_jax as fz
model, kind, bench_dir = sys.argv[1], sys.argv[2], sys.argv[5]
n, steps = int(sys.argv[3]), int(sys.argv[4])
widths, batch_size = {"mlp_784_10_10": ([784, 10, 10], 512),
                      "mlp_784_1024_1024_10": ([784, 1024, 1024, 10], 256)}[model]
keys = jax.random.split(jax.random.key(0), len(widths) + 1)
params = {f"w{i}": jax.random.normal(keys[i], (a, b)) / jnp.sqrt(a)
          for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))}
alpha = {k: 2 * jnp.mean(jnp.abs(w)) / jnp.sqrt(1.0) for k, w in params.items()}
batch = {"x": jax.random.normal(keys[-1], (batch_size, 784)),
         "y": jax.random.randint(keys[-1], (batch_size,), 0, 10)}

def quantize(w, a):  # 2 bits, levels {-2, -1, 0, 1}·a, identity STE
  q = jnp.clip(jnp.round(w / a), -2, 1) * a
  return w + jax.lax.stop_gradient(q - w)

def loss_fn(params, batch):
  h = batch["x"]
  for i in range(len(params)):
    h = h @ quantize(params[f"w{i}"], alpha[f"w{i}"])
    if i < len(params) - 1:
      h = jax.nn.relu(h)
  return optax.softmax_cross_entropy_with_integer_labels(h, batch["y"]).mean()

epsilon = {k: 0.5 * a for k, a in alpha.items()}
if kind == "fogzo":
  est = fz.fogzo(num_perturbations=n, beta=0.999, epsilon=epsilon, noise="uniform", key=0)
else:
  est = fz.nspsa(num_perturbations=n, epsilon=epsilon, noise="uniform", key=0)
tx = optax.chain(est, optax.adamw(1e-3))

@jax.jit
def step(state, batch):
  params, opt_state = state
  loss, g = jax.value_and_grad(loss_fn)(params, batch)
  updates, opt_state = tx.update(g, opt_state, params, value_fn=loss_fn, batch=batch)
  return (optax.apply_updates(params, updates), opt_state), loss

sys.path.insert(0, bench_dir)  # this checkout's timing rule, for both checkouts
import timing
print(timing.median_step_seconds(step, (params, tx.init(params)), batch, steps)[0])
"""


def measure(checkout: str, model: str, kind: str, n: int) -> float:
  env = dict(os.environ, PYTHONPATH=checkout)
  out = subprocess.run([sys.executable, "-c", SNIPPET, model, kind, str(n), str(_STEPS.value),
                        os.path.join(HERE, "bench")],
                       env=env, capture_output=True, text=True, timeout=1800, cwd=checkout)
  if out.returncode:
    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
    exits.exit_now(1, f"estimator_versions.py: {model} {kind} n={n} in {checkout} failed "
                      f"({last}); the rows before it are in {_OUT.value}")
  return float(out.stdout.strip().splitlines()[-1])


def check_flags() -> dict:
  """The checkouts to time ("this", and "old" with --old); a bad flag is an ``app.UsageError``."""
  require_positive(steps=_STEPS.value, repeats=_REPEATS.value)
  return to_time(_OLD.value)


def main(argv):
  del argv
  with exits.one_line_errors("estimator_versions.py"):
    checkouts = check_flags()
  rows = []
  for model, kind, n in ROWS:
    samples = {k: [] for k in checkouts}
    for _ in range(_REPEATS.value):
      for label, path in checkouts.items():
        samples[label].append(measure(path, model, kind, n))
    ms = {k: 1e3 * sorted(v)[len(v) // 2] for k, v in samples.items()}
    rows.append(dict(model=model, estimator=kind, n=n, step_ms=ms,
                     samples_s=samples,
                     ratio_this_to_old=ms["this"] / ms["old"] if "old" in ms else None))
    print(json.dumps(rows[-1]), flush=True)
    write_atomic(_OUT.value, json.dumps(dict(  # after every row: a time limit keeps these rows
        rows=rows, machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(),
                                python=sys.version.split()[0]), old=_OLD.value), indent=1))
  print("| model | estimator | n | this (ms) | old (ms) | this / old |\n|---|---|---|---|---|---|")
  for r in rows:
    old = r["step_ms"].get("old")
    print(f"| {r['model']} | {r['estimator']} | {r['n']} | {r['step_ms']['this']:.3f} | "
          f"{old:.3f} | {r['ratio_this_to_old']:.3f} |" if old else
          f"| {r['model']} | {r['estimator']} | {r['n']} | {r['step_ms']['this']:.3f} | – | – |")


if __name__ == "__main__":
  app.run(main, flags_parser=exits.parse_flags)  # a bad flag: one line, exit 2
