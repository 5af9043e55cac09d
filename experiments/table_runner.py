"""Shared runner for the paper-table scripts: fixed_scale.py, lsq.py, quest.py, equal_time.py.

A table is a list of ``Row``s. Each row names the paper's setting and numbers, our stated
(reduced) scale, the config and overrides, and the variants to run (STE, FOGZO, ablations);
or, when it cannot run here, the one-line reason. ``main`` trains what is missing (runs go to
``<out>/<row>/<variant>_s<seed>``, finished runs are reused, killed ones resume) and writes
``<out>/table.md`` and ``<out>/table.json``: paper's number beside ours (mean ± std over seeds,
every seed's value, steps, wall time), the exact command and the machine. The table always holds
every row and every finished seed, whatever subset ``--rows``/``--seeds`` trained.

Each table script only defines its rows and calls ``main``; see fixed_scale.py. (Not named
``tables`` so it cannot shadow the PyTables package on sys.path.)
"""

import json
import os
import platform
import shlex
import statistics
import sys
import types
from typing import Callable, Mapping, NamedTuple, Sequence

from fogzo_jax.train import exits, sweep


class Row(NamedTuple):
  """One line of a paper table and our counterpart.

  key: folder name under --out and the --rows selector.
  paper: the paper's setting in words ("LLaMA-9M, C4, identity STE").
  paper_values: variant name → the paper's number (only for variants the paper reports).
  scale: our setting in words (what actually runs here), or "" when not run.
  config: config spec ("configs/llama.py:9m"); overrides: shared ``key=value`` strings.
  variants: variant name → (label, extra overrides).
  reason: non-empty when the row does not run here: the one-line reason.
  """
  key: str
  paper: str
  paper_values: Mapping[str, float]
  scale: str = ""
  config: str = ""
  overrides: tuple = ()
  variants: Mapping[str, tuple] = types.MappingProxyType({})
  reason: str = ""


STE = ("STE", ("estimator.kind=ste",))
RECIPE = "fogzo_recipe"  # the variant name of the study's recommended setting (confirmed_variants)
RECIPE_NOSKIP = "fogzo_recipe_noskip"  # the same without skip_zero_grad (amendments 30, 31)
FOGZO = ("FOGZO n = 1, β 1 → 0.999", ("estimator.kind=fogzo",))


def confirmed_variants(config: str, overrides: Sequence[str]) -> dict:
  """The study's settings (docs/results/where_fogzo_helps.md; ours, not the paper's), added to
  every table row that runs. The row's rate is read from its config and overrides (``config``
  as in ``Row``, relative to the repository).

  - ``fogzo_recipe``: the README's recommendation of amendments 24-29: FOGZO with noise share
    ρ = 0.3 (β → d/(d + ρ²), d the perturbed weights), the STE's linear prediction in place of
    the measured difference (``difference="ste_linear"``) and no noise where the STE gradient is
    0 (``skip_zero_grad``), at the row's own rate. STE at that rate is its control. (Since
    amendment 30 the README keeps ``skip_zero_grad`` for LSQ only; the variant stays as it ran.)
  - ``fogzo_recipe_noskip``: the same without ``skip_zero_grad``: the README's recommendation
    for the rows whose quantizer is not LSQ (amendment 31).
  - ``fogzo_rho0.3_lr3x``: the earlier setting (amendments 2-11): ρ = 0.3 at 3× the row's rate,
    with ``ste_lr3x`` (STE at that same rate) as its control, since a transferred rate alone can
    be the whole gain (resnet8 in the study); ``fogzo_rho0.3``: ρ = 0.3 at the row's rate.
  """
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  lr = sweep.apply_overrides(sweep.load_config(os.path.join(root, config)),
                             overrides).optimizer.learning_rate
  rho = ("estimator.kind=fogzo", "estimator.noise_share=0.3")
  high = f"optimizer.learning_rate={3 * lr:g}"
  ste_linear = "estimator.difference=ste_linear"
  return {
      "fogzo_rho0.3": ("FOGZO, noise share 0.3 (ours)", rho),
      "ste_lr3x": (f"STE, lr {3 * lr:g} (3×)", ("estimator.kind=ste", high)),
      "fogzo_rho0.3_lr3x": (f"FOGZO, noise share 0.3, lr {3 * lr:g} (ours: the earlier setting)",
                            rho + (high,)),
      RECIPE: ("FOGZO, noise share 0.3, STE-linear difference, no noise where g = 0 (ours)",
               rho + (ste_linear, "estimator.skip_zero_grad=True")),
      RECIPE_NOSKIP: ("FOGZO, noise share 0.3, STE-linear difference (ours)", rho + (ste_linear,)),
  }


def with_confirmed(rows: Sequence[Row]) -> list[Row]:
  """``rows`` with the study's setting (``confirmed_variants``) added to every row that runs."""
  return [r if r.reason else r._replace(
      variants={**r.variants, **confirmed_variants(r.config, r.overrides)}) for r in rows]


def at_length(rows: Sequence[Row], steps: int) -> list[Row]:
  """``rows`` trained for ``steps`` steps instead of their own length (``num_train_steps``
  overrides ``num_epochs`` too); each keeps its variants, under the key ``<key>_<steps>steps``
  (its own run folder), and says the length in its scale. Rows that do not run are dropped."""
  if steps < 1:
    raise ValueError(f"steps must be >= 1, got {steps}")
  return [r._replace(key=f"{r.key}_{steps}steps",
                     overrides=r.overrides + (f"num_train_steps={steps}",),
                     scale=f"{r.scale}; here {steps} steps") for r in rows if not r.reason]


def finished_seeds(folder: str, name: str) -> set:
  """The seeds of ``name``'s finished runs in ``folder`` (``<name>_s<seed>/summary.json``)."""
  prefix = f"{name}_s"
  found = set()
  for entry in os.listdir(folder) if os.path.isdir(folder) else ():
    seed = entry[len(prefix):]
    if (entry.startswith(prefix) and seed.isdigit()
        and os.path.exists(os.path.join(folder, entry, "summary.json"))):
      found.add(int(seed))
  return found


def run_table(rows: Sequence[Row], seeds: Sequence[int], out: str, report_only: bool = False,
              train_fn: Callable | None = None, only: Sequence[str] = (),
              train_rows: Sequence[str] | None = None) -> list[dict]:
  """Trains the missing runs of ``seeds`` (of the rows in ``train_rows`` and the variants in
  ``only``, when given); returns one record per (row, variant) for ``format_table``. Every row
  is reported, each with ``seeds`` and every other seed already finished under ``out``, so a
  partial run (one row, one seed) never drops earlier results from the table."""
  records = []
  for row in rows:
    if row.reason:
      records.append(dict(row=row.key, paper=row.paper, variant="", label="",
                          paper_value=None, reason=row.reason))
      continue
    base = sweep.apply_overrides(sweep.load_config(row.config), row.overrides)
    variants = {name: extra for name, (_, extra) in row.variants.items()}
    folder = os.path.join(out, row.key)
    if not report_only and (train_rows is None or row.key in train_rows):
      sweep.run_variants(base, {k: v for k, v in variants.items() if not only or k in only},
                         seeds, folder, train_fn=train_fn)
    for name, (label, _) in row.variants.items():
      shown = sorted(set(seeds) | finished_seeds(folder, name))
      summaries = sweep.run_variants(base, {name: variants[name]}, shown, folder,
                                     report_only=True).get(name, [])
      metric, scale = sweep.headline_metric(summaries)
      records.append(dict(
          row=row.key, paper=row.paper, scale=row.scale, variant=name, label=label,
          paper_value=row.paper_values.get(name), metric=metric,
          values=[scale * s[metric] for s in summaries],
          seeds=[s["seed"] for s in summaries],
          steps=[s["steps"] for s in summaries],
          tokens=[s.get("tokens_seen") for s in summaries],
          wall_time_s=[s["wall_time_s"] for s in summaries], reason=""))
  return records


def format_table(title: str, records: Sequence[dict], command: str, machine: str) -> str:
  """Markdown: one line per (row, variant), the paper's number beside ours."""
  lines = [f"# {title}", "", f"Command: `{command}`", "", f"Machine: {machine}", "",
           "| paper setting | our scale | estimator | paper | ours (mean ± std) | per seed "
           "| steps | wall time per run (s) |", "|---|---|---|---|---|---|---|---|"]
  previous = None
  for r in records:
    if r["reason"]:
      lines.append(f"| {r['paper']} | not run here: {r['reason']} | | | | | | |")
      continue
    first = r["row"] != previous  # the setting and scale are written once per row
    previous = r["row"]
    paper = "–" if r["paper_value"] is None else f"{r['paper_value']:g}"
    per_seed = ", ".join(f"{v:.2f}" for v in r["values"]) or "not run yet"
    wall = f"{statistics.mean(r['wall_time_s']):.0f}" if r["wall_time_s"] else "–"
    steps = ", ".join(sorted({str(s) for s in r["steps"]})) or "–"
    lines.append(f"| {r['paper'] if first else ''} | {r['scale'] if first else ''} | "
                 f"{r['label']} | {paper} | {sweep.mean_std(r['values'])} | {per_seed} | "
                 f"{steps} | {wall} |")
  return "\n".join(lines) + "\n"


def main(title: str, make_rows: Callable[[], Sequence[Row]], default_out: str):
  """absl entry point shared by the table scripts (flags --rows, --seeds, --out, --report_only)."""
  from absl import app, flags  # noqa: PLC0415

  rows_flag = flags.DEFINE_list("rows", [], "Row keys to train (default: all); the table always "
                                "shows every row with every finished seed.")
  seeds_flag = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to train (the table adds "
                                 "every seed already finished).")
  out_flag = flags.DEFINE_string("out", default_out, "Output folder.")
  report_flag = flags.DEFINE_bool("report_only", False, "Only rebuild table.md from the runs.")
  variants_flag = flags.DEFINE_list("variants", [], "Train only these variants (default: all).")
  steps_flag = flags.DEFINE_integer(
      "num_train_steps", 0, "Train the --rows for this many steps instead of their own length "
      "(0: their own). Runs go to <out>/<row>_<N>steps; the table, of those rows only, to "
      "<out>/table_<N>steps.md and .json.")

  def run(argv):
    del argv
    # Bad flags and a run's fatal error: one line and its exit code (fogzo_jax/train/exits.py).
    with exits.one_line_errors(os.path.basename(sys.argv[0])):
      write_table()

  def write_table():
    import jax  # noqa: PLC0415

    rows = list(make_rows())
    keys = [r.key for r in rows]
    unknown = sorted(set(rows_flag.value) - set(keys))
    if unknown:
      raise app.UsageError(f"--rows: unknown {unknown}; allowed: {', '.join(keys)}")
    seeds = sweep.parse_seeds(seeds_flag.value)
    train_rows, name = rows_flag.value or None, "table"
    if steps_flag.value < 0:
      raise app.UsageError(f"--num_train_steps: must be >= 0 (0: each row's own length), got "
                           f"{steps_flag.value}")
    if steps_flag.value:
      rows = at_length([r for r in rows if train_rows is None or r.key in train_rows],
                       steps_flag.value)
      train_rows, name = None, f"table_{steps_flag.value}steps"
    os.makedirs(out_flag.value, exist_ok=True)
    records = run_table(rows, seeds, out_flag.value,
                        report_only=report_flag.value, only=variants_flag.value,
                        train_rows=train_rows)
    machine = (f"{platform.platform()}, {os.cpu_count()} CPU cores, device "
               f"{jax.devices()[0].device_kind}, jax {jax.__version__}")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    text = format_table(title, records, command, machine)
    with open(os.path.join(out_flag.value, f"{name}.md"), "w") as f:
      f.write(text)
    with open(os.path.join(out_flag.value, f"{name}.json"), "w") as f:
      json.dump(dict(title=title, command=command, machine=machine, records=records), f,
                indent=1)
    print(text)

  app.run(run, flags_parser=exits.parse_flags)  # a bad flag: one line, exit 2


# Reduced scales that run on the project's 2-core CPU (shared by the table scripts; every
# table states them). Overrides on top of the paper-scale config named in each row.
LLAMA_TINY = (  # LLaMA-9M layout shrunk to d 64, 2 layers; byte-level Tiny Shakespeare.
    "num_train_steps=300", "data.batch_size=16", "data.seq_len=64", "eval_every_steps=100",
    "checkpoint_every_steps=0", "optimizer.warmup_steps=30", "data.eval_batch_size=256",
    "model.dim=64", "model.layers=2", "model.heads=2")
LLAMA_TINY_SCALE = ("LLaMA-9M layout at d 64, 2 layers (106k quantized weights), Tiny Shakespeare bytes, "
                    "300 steps × 16 × 64 tokens")
LLAMA_9M = (  # LLaMA-9M at its real size (8.9M quantized weights), short sequences, few steps.
    "num_train_steps=200", "data.batch_size=16", "data.seq_len=64", "eval_every_steps=100",
    "checkpoint_every_steps=100", "optimizer.warmup_steps=20", "data.eval_batch_size=256")
LLAMA_9M_SCALE = ("LLaMA-9M, real size (8.9M quantized weights), Tiny Shakespeare bytes, "
                  "200 steps × 16 × 64 tokens")
LLAMA_20M_SCALE = ("LLaMA-20M, real size (19.5M quantized weights), Tiny Shakespeare bytes, "
                   "200 steps × 16 × 64 tokens")  # overrides: LLAMA_9M on configs/llama.py:20m
DEIT_FASHION = (  # DeiT-Tiny layout at width 96, depth 4, patch 4 on 28-px Fashion-MNIST.
    "data.name=fashion_mnist", "data.normalize=unit", "data.augment=crop_flip", "data.mixup=false",
    "label_smoothing=0.0", "num_train_steps=300", "data.batch_size=128", "optimizer.learning_rate=0.001",
    "optimizer.warmup_steps=20", "data.eval_batch_size=2000", "checkpoint_every_steps=0",
    "model.hidden=96", "model.depth=4", "model.heads=3")
DEIT_FASHION_SCALE = ("DeiT width 96, depth 4, patch 4, Fashion-MNIST, 300 steps × 128 "
                      "(0.64 epoch)")
RESNET_FASHION = (  # ResNet-18 layout at width 8 (8-16-32-64 channels), small-image stem.
    "data.name=fashion_mnist", "data.normalize=unit", "num_epochs=1", "data.batch_size=128",
    "optimizer.learning_rate=0.001", "optimizer.warmup_steps=20", "data.eval_batch_size=2000",
    "checkpoint_every_steps=0", "model.width=8")
RESNET_FASHION_SCALE = "ResNet-18 width 8, Fashion-MNIST, 1 epoch (468 steps × 128)"
