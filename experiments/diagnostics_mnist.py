"""Estimator diagnostics on the 2-bit MNIST MLP: cosine to ∇L_s against β and against n.

  python experiments/diagnostics_mnist.py --out=docs/results [--ste_steps=200]

Trains the paper's MLP with STE for --ste_steps steps (so θ is mid-training, not at init),
takes one batch of 512, estimates ∇L_s with a 65,536-perturbation n-SPSA reference, then
measures STE, FOGZO(β, n) and n-SPSA(n) over 16 keys (``fogzo_jax.diagnostics``). Writes
``diagnostics_mnist.md`` and ``diagnostics_mnist.png`` in --out.
"""

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import mnist_mlp  # noqa: E402
import fogzo_jax as fz  # noqa: E402
from fogzo_jax import data as data_lib, diagnostics  # noqa: E402
from fogzo_jax.quant.layers import epsilon_from_params  # noqa: E402
from fogzo_jax.train import loop  # noqa: E402

_OUT = flags.DEFINE_string("out", "docs/results", "Output folder.")
_STE_STEPS = flags.DEFINE_integer("ste_steps", 200, "STE steps before measuring.")
_REF_N = flags.DEFINE_integer("reference_n", 65536, "Perturbations of the n-SPSA reference.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed.")
_LAYER = flags.DEFINE_string("layer", "Dense_1", "Layer whose parameters are measured ('all': "
                             "every parameter; needs a far larger reference_n).")


def main(argv):
  del argv
  config = mnist_mlp.get_config()
  config.update(estimator="ste", seed=_SEED.value)
  data = data_lib.make_pipeline(config)
  model = loop.build_model(config, data.info)
  state, tx = loop.create_train_state(
      config, model, functools.partial(loop.make_optimizer, config, total_steps=1170),
      jnp.asarray(data.sample))
  step = jax.jit(functools.partial(loop.train_step, model=model, tx=tx, estimator="ste",
                                   task="image"))
  for i in range(_STE_STEPS.value):
    state, _ = step(state, data.batch(i))
  batch = data.batch(_STE_STEPS.value)

  layer = _LAYER.value

  def value_fn(sub, batch):
    """The loss as a function of the measured layer's parameters (all others fixed)."""
    params = sub if layer == "all" else {**state.params, layer: sub}
    logits = model.apply({"params": params, "quant": state.quant}, batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  eps = epsilon_from_params(state.params, state.quant, loop.quant_spec(config))
  params = state.params
  if layer != "all":
    params, eps = state.params[layer], eps[layer]
  noise = fz.implicit_smoothing(config.ste).noise
  betas, ns = (1.0, 0.999, 0.99, 0.9, 0.666, 0.0), (1, 10, 100, 1000)
  rows, self_cos = diagnostics.compare(value_fn, params, eps, noise,
                                       jax.random.key(_SEED.value), betas=betas[:-1], ns=ns,
                                       num_keys=16, reference_n=_REF_N.value, batch=batch)
  dim = sum(x.size for x in jax.tree.leaves(params))
  lines = [f"Measured parameters: {layer} ({dim:,}). "
           f"θ after {_STE_STEPS.value} STE steps (seed {_SEED.value}); one batch of 512; "
           f"reference: n-SPSA with {_REF_N.value:,} perturbations (cosine between its two "
           f"halves: {self_cos:.3f}); 16 keys per estimator.", "",
           "| estimator | cosine to ∇L_s | relative bias | relative variance | forward passes |",
           "|---|---|---|---|---|"]
  lines += [f"| {r.name} | {r.cosine:.3f} | {r.bias:.3f} | {r.variance:.3g} | {r.forward_passes:,} |"
            for r in rows]
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "diagnostics_mnist.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  by = {r.name: r for r in rows}
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  for n in ns:
    ax1.plot([str(b) for b in betas],
             [by[f"fogzo beta={b} n={n}"].cosine if b > 0 else by[f"nspsa n={n}"].cosine
              for b in betas], marker="o", label=f"n = {n}")
  ax1.axhline(by["ste"].cosine, color="k", ls="--", label="STE")
  ax1.set_xlabel("β (0 = n-SPSA)"), ax1.set_ylabel("cosine to ∇L_s"), ax1.legend()
  for name in ("fogzo beta=0.999", "fogzo beta=0.9", "nspsa"):
    ax2.plot([by[f"{name} n={n}"].forward_passes for n in ns],
             [by[f"{name} n={n}"].cosine for n in ns], marker="o", label=name)
  ax2.axhline(by["ste"].cosine, color="k", ls="--", label="STE (3 passes)")
  ax2.set_xscale("log"), ax2.set_xlabel("forward passes per estimate")
  ax2.set_ylabel("cosine to ∇L_s"), ax2.legend()
  for ax in (ax1, ax2):
    ax.grid(alpha=0.3)
  fig.suptitle(f"2-bit MNIST MLP 784-10-10, identity STE; parameters of {layer} ({dim:,})")
  fig.tight_layout()
  fig.savefig(os.path.join(_OUT.value, "diagnostics_mnist.png"), dpi=110)


if __name__ == "__main__":
  app.run(main)
