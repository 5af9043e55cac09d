"""The line-search signal of FOGZO along training and across scales (issue 14, step 1).

  python experiments/line_search.py --models=mlp,llama_tiny,llama_9m --out=runs/line_search
  python experiments/line_search.py --report_only --out=runs/line_search   # table + plot

For each model an STE run (seed 0) is trained with checkpoints; at its start, 30 %, 70 % and end
the script takes --batches batches and, for each scaling of the STE direction h (the paper's
unit ĝ, per-tensor, unit RMS, unit RMS clipped at half a step), measures with
``fogzo_jax.diagnostics.line_search_fn``: the line-search scalar c = [f(θ+ε⊙h) − f(θ−ε⊙h)]/2
that FOGZO at β = 1 multiplies h by, the smoothed slope R (the same pair around θ + ε⊙u₀,
averaged over --num_base draws of u₀: the finite difference of the smoothed loss L_s), and the
threshold crossings. Summaries (``diagnostics.summarize_line_search``): how often the STE
direction descends L_s, sign agreement of c with R, the SNR of c and of one smoothed-base draw.
Writes ``signal.json``, ``signal.md`` and ``signal.png`` to --out.
"""

import json
import os

import jax
import matplotlib
import orbax.checkpoint as ocp
from absl import app, flags

import fogzo_jax as fz
from fogzo_jax import diagnostics
from fogzo_jax.quant import layers as quant_layers
from fogzo_jax.quant.fixed import levels
from fogzo_jax.train import exits, loop, sweep
from fogzo_jax.train.sweep import apply_overrides, load_config

import where_fogzo_helps  # experiments/: the study whose 1,000-step LLaMA-9M recipe is reused

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_MODELS = flags.DEFINE_list("models", ["mlp", "llama_tiny", "llama_9m"], "Models (MODELS).")
_BATCHES = flags.DEFINE_integer("batches", 12, "Batches per (model, phase, scaling).")
_NUM_BASE = flags.DEFINE_integer("num_base", 48, "u₀ draws for the smoothed reference.")
_OUT = flags.DEFINE_string("out", "runs/line_search", "Output folder.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rebuild the report.")

# name: (config, overrides of its STE run, words). The STE runs are the study's reduced scales.
MODELS = {
    "mlp": ("mnist_mlp.py", ["optimizer.learning_rate=0.002", "data.eval_train=False"],
            "MNIST MLP 784-10-10, 10 epochs, lr 2e-3"),
    "llama_tiny": ("llama.py:9m", ["model.dim=64", "model.layers=2", "model.heads=2",
                                   "num_train_steps=1000", "data.batch_size=16",
                                   "data.seq_len=64", "optimizer.warmup_steps=30",
                                   "data.eval_batch_size=256", "eval_every_steps=500"],
                   "LLaMA layout d 64, 2 layers, 1000 steps × 16 × 64"),
    "llama_9m": ("llama.py:9m", ["num_train_steps=200", "data.batch_size=16", "data.seq_len=64",
                                 "optimizer.warmup_steps=20", "data.eval_batch_size=256",
                                 "eval_every_steps=100"],
                 "LLaMA-9M, 200 steps × 16 × 64"),
    # amendment 12 of docs/results/where_fogzo_helps.md: the study's 1,000-step LLaMA-9M recipe
    # (its checkpoint interval is replaced below), to see whether c's signal lasts to its end
    "llama_9m_1000": ("llama.py:9m", list(where_fogzo_helps.MODELS["llama_9m"][1]),
                      "LLaMA-9M, 1000 steps × 16 × 64"),
}
SAME_D = {"llama_9m_1000": "llama_9m"}  # longer runs of a plotted model: open markers, no line
PHASES = {"start": 0.0, "30%": 0.3, "70%": 0.7, "end": 1.0}
SCALINGS = {"unit (paper)": dict(g_hat_norm="unit"), "per tensor": dict(g_hat_norm="tensor"),
            "unit RMS": dict(g_hat_norm="rms"),
            "unit RMS, clip α/2": dict(g_hat_norm="rms", g_hat_clip="half_step")}


def measure(name: str) -> list[dict]:
  spec, overrides, _ = MODELS[name]
  config = apply_overrides(load_config(os.path.join(ROOT, "configs", spec)),
                           ["estimator.kind=ste", "seed=0", "keep_checkpoints=20", *overrides])
  run, state0 = loop.build(config)
  total = run.total_steps
  config.checkpoint_every_steps = max(1, total // 10)
  workdir = os.path.join(_OUT.value, name, "ste_run")
  sweep.train_logged(config, workdir)  # the libraries' log: <workdir>/train.log
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")))
  available = manager.all_steps()
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          state0)
  qspec = quant_layers.QuantSpec(**config.quant)
  eps_bar, noise = fz.implicit_smoothing(qspec.ste)
  lo_hi = levels(qspec.bits)
  rows = []
  for phase, fraction in PHASES.items():
    step = min(available, key=lambda s: abs(s - fraction * total)) if fraction else 0
    state = state0 if step == 0 else manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))["state"]

    def loss_fn(params, batch, state=state):
      variables = {"params": params, "quant": state.quant, "batch_stats": state.batch_stats}
      logits, _ = loop.apply_model(run.model, run.data.task, variables, batch, train=True)
      loss, _, w = loop.per_example_loss(run.data.task, logits, batch)
      return (loss * w).sum() / w.sum()

    grad_fn = jax.jit(jax.grad(loss_fn))
    steps = jax.tree.map(lambda a, p: jax.numpy.ones_like(p) if a is None else a,
                         quant_layers.weight_step_sizes(state.params, state.quant, qspec),
                         state.params, is_leaf=lambda x: x is None)
    batches = [run.put(run.data.train[10_000 + 37 * b]) for b in range(_BATCHES.value)]
    grads = [grad_fn(state.params, b) for b in batches]
    for scaling, kwargs in SCALINGS.items():
      clip = kwargs.get("g_hat_clip")
      fn = diagnostics.line_search_fn(
          loss_fn, quant_layers.epsilon_from_params(state.params, state.quant, qspec), noise,
          mask=quant_layers.quantized_mask(state.params, state.quant),
          g_hat_norm=kwargs["g_hat_norm"], g_hat_clip=0.5 / eps_bar if clip else None,
          num_base=_NUM_BASE.value, levels=lo_hi)
      terms = [fn(state.params, g, jax.random.key(b), steps=steps, batch=batch)
               for b, (g, batch) in enumerate(zip(grads, batches))]
      summary = diagnostics.summarize_line_search(terms)
      summary.update(model=name, phase=phase, step=step, scaling=scaling)
      rows.append(summary)
      print(json.dumps(summary), flush=True)
  manager.close()
  return rows


def report(rows: list[dict]) -> str:
  lines = ["| model (d) | phase (step) | ĝ scaling | crossings | STE descends L_s | c agrees "
           "with R | corr(c, R) | SNR of c | SNR of one smoothed-base draw | R / STE slope |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['model']} ({r['size']:,.0f}) | {r['phase']} ({r['step']}) | {r['scaling']} | "
        f"{r['crossings']:,.0f} | {r['ste_descends']:.2f} | {r['raw_sign_agreement']:.2f} | "
        f"{r['raw_corr']:.2f} | {r['raw_snr']:.2f} | {r['smoothed_snr']:.2f} | "
        f"{r['ste_ratio']:.2f} |")
  return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str) -> None:
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
  for ax, key, label in ((axes[0], "raw_snr", "SNR of the line-search scalar c (base θ)"),
                         (axes[1], "smoothed_snr", "SNR of one smoothed-base draw")):
    for scaling in SCALINGS:
      for phase, marker in zip(PHASES, "os^D"):
        mine = [r for r in rows if r["scaling"] == scaling and r["phase"] == phase]
        color = f"C{list(SCALINGS).index(scaling)}"
        pts = sorted((r["size"], r[key]) for r in mine if r["model"] not in SAME_D)
        if pts:
          ax.plot(*zip(*pts), marker=marker, ls="-" if phase == "end" else ":", color=color,
                  label=f"{scaling}" if phase == "end" else None, alpha=0.9)
        longer = [(1.25 * r["size"], r[key]) for r in mine if r["model"] in SAME_D]
        if longer:  # drawn just right of the shorter run's d
          ax.plot(*zip(*longer), marker=marker, ls="none", mfc="none", color=color)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log"), ax.set_yscale("log"), ax.grid(alpha=0.3)
    ax.set_xlabel("perturbed weights d (markers: start o, 30 % s, 70 % ^, end D;\n"
                  "open, drawn right of d: LLaMA-9M's 1,000-step run)")
    ax.set_title(label, fontsize=10)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main(argv):
  del argv
  with exits.one_line_errors("line_search.py"):  # a bad flag or a run's fatal error: one line
    measure_and_report()


def measure_and_report():
  os.makedirs(_OUT.value, exist_ok=True)
  path = os.path.join(_OUT.value, "signal.json")
  rows = json.load(open(path)) if os.path.exists(path) else []
  if not _REPORT_ONLY.value:
    for name in _MODELS.value:
      if name not in MODELS:
        raise app.UsageError(f"--models: {name!r} is not one of {', '.join(MODELS)}")
      rows = [r for r in rows if r["model"] != name] + measure(name)
      with open(path, "w") as f:
        json.dump(rows, f, indent=1)
  order = {m: i for i, m in enumerate(MODELS)}
  rows.sort(key=lambda r: (order[r["model"]], list(PHASES).index(r["phase"]),
                           list(SCALINGS).index(r["scaling"])))
  text = report(rows)
  with open(os.path.join(_OUT.value, "signal.md"), "w") as f:
    f.write(text)
  plot(rows, os.path.join(_OUT.value, "signal.png"))
  print(text)


if __name__ == "__main__":
  app.run(main, flags_parser=exits.parse_flags)  # a bad flag: one line, exit 2
