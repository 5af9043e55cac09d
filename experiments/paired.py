"""The study's paired test between settings, read from finished run folders: the command behind
the tests of docs/results/where_fogzo_helps.md that ran outside a stage (train.py loops, seeds
added by amendments, runs pooled over machines).

  python experiments/paired.py --runs=runs/where_fogzo_helps/llama_9m_long/confirm \\
      --names=ste,paper_ste_linear_ste_lr,gradient_noise_ste_lr --seeds=10,11,12,13,14 \\
      --pairs=ste:gradient_noise_ste_lr,paper_ste_linear_ste_lr:gradient_noise_ste_lr

A run is ``<root>/<name>_s<seed>`` with a ``summary.json``, looked up in each ``--runs`` root in
turn (the first that has it: pool an earlier GPU lease's runs with the CPU's by naming both).
Printed as markdown: each name's metric per seed with mean ± std and the training loss of the
last logging window; the mean over seeds at each evaluation; then for each pair ``a:b`` the
per-seed gains of b over a (> 0: b better; perplexity and loss lower is better, accuracy
higher), their mean with its 95 % interval and the paired t test at p 0.05 (``sweep.paired_t``, the pre-registered
rule) over the seeds on which both finished. ``--plot=<file>.png`` also draws each pair's
per-seed values.
"""

import json
import os
import statistics

from absl import app, flags

from fogzo_jax.train import exits, metrics, sweep

_RUNS = flags.DEFINE_list("runs", None, "Folders holding <name>_s<seed> run folders, searched in "
                          "this order.")
_NAMES = flags.DEFINE_list("names", None, "Settings (run-folder names without _s<seed>).")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds (integers ≥ 0).")
_PAIRS = flags.DEFINE_list("pairs", [], "Tests a:b (does b beat a); default: the first name "
                           "against each other one.")
_METRIC = flags.DEFINE_string("metric", "", "summary.json key (default: val_perplexity for "
                              "language models, test_accuracy otherwise).")
_PLOT = flags.DEFINE_string("plot", "", "Also draw each pair's per-seed values (one panel per "
                            "pair, a line per seed from a to b) to this PNG file.")

LOWER_IS_BETTER = ("perplexity", "loss")  # a metric whose name contains one of these


def find_run(roots, name: str, seed: int):
  """The first ``<root>/<name>_s<seed>`` with a summary.json, or None."""
  for root in roots:
    folder = os.path.join(root, f"{name}_s{seed}")
    if os.path.exists(os.path.join(folder, "summary.json")):
      return folder
  return None


def collect(roots, names, seeds) -> dict:
  """name → seed → (summary dict, run folder), for the finished runs."""
  out = {}
  for name in names:
    for seed in seeds:
      folder = find_run(roots, name, seed)
      if folder:
        with open(os.path.join(folder, "summary.json")) as f:
          out.setdefault(name, {})[seed] = (json.load(f), folder)
  return out


def gains(runs: dict, a: str, b: str, metric: str) -> dict:
  """seed → gain of b over a (> 0: b better), on the seeds where both finished."""
  sign = -1.0 if any(word in metric for word in LOWER_IS_BETTER) else 1.0
  both = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
  return {s: sign * (runs[b][s][0][metric] - runs[a][s][0][metric]) for s in both}


def report(roots, names, seeds, pairs, metric: str = "") -> str:
  runs = collect(roots, names, seeds)
  if not runs:
    raise app.UsageError(f"no finished run of {', '.join(names)} on seeds "
                         f"{','.join(map(str, seeds))} under {', '.join(roots)}")
  metric = metric or default_metric(runs)
  lines = [f"| setting | {' | '.join(f's{s}' for s in seeds)} | mean ± std | training loss of "
           "the last window |", "|---|" + "---|" * (len(seeds) + 2)]
  curves = {}
  for name in names:
    done = runs.get(name, {})
    if any(metric not in done[s][0] for s in done):
      raise app.UsageError(f"--metric: {metric!r} is not in every summary.json of {name}")
    values = [done[s][0][metric] for s in seeds if s in done]
    cells = [f"{done[s][0][metric]:.4g}" if s in done else "not finished" for s in seeds]
    loss = []  # the training loss of each run's last logging window
    for s in done:
      rows = metrics.read_jsonl(os.path.join(done[s][1], "metrics.jsonl"))
      loss += [r["step_loss"] for r in rows if "step_loss" in r][-1:]
      for row in rows:
        if metric in row:
          curves.setdefault(name, {}).setdefault(row["step"], []).append(row[metric])
    lines.append(f"| {name} | {' | '.join(cells)} | {sweep.mean_std(values)} | "
                 f"{sweep.mean_std(loss)} |")
  steps = sorted({k for c in curves.values() for k in c})
  if steps:
    lines += ["", f"Mean {metric} over the finished seeds at each evaluation:", "",
              f"| setting | {' | '.join(f'step {k}' for k in steps)} |",
              "|---|" + "---|" * len(steps)]
    lines += [f"| {name} | " + " | ".join(
        f"{statistics.mean(c[k]):.4g}" if k in c else "–" for k in steps) + " |"
        for name, c in curves.items()]
  lines += ["", f"Paired tests (gain of b over a, > 0: b better; {metric}):", ""]
  for a, b in pairs:
    g = gains(runs, a, b, metric)
    if len(g) < 2:
      lines.append(f"- {b} vs {a}: fewer than 2 seeds with both ({len(g)})")
      continue
    t, critical, verdict = sweep.paired_t(list(g.values()))
    verb = {"better": "beats", "worse": "loses to", "tie": "ties"}[verdict]
    mean = statistics.mean(g.values())
    half = critical * statistics.stdev(g.values()) / len(g) ** 0.5  # the test's 95 % interval
    lines.append(f"- {b} vs {a}, seeds {','.join(map(str, g))}: "
                 f"{', '.join(f'{x:+.3f}' for x in g.values())}; mean {mean:+.3f} "
                 f"[{mean - half:+.3f}, {mean + half:+.3f}], t = {t:+.2f} (critical "
                 f"{critical:.3f}, {len(g) - 1} dof): {b} {verb} {a}")
  return "\n".join(lines)


def default_metric(runs: dict) -> str:
  """val_perplexity for language models, test_accuracy otherwise (``sweep.headline_metric``)."""
  return sweep.headline_metric([s for r in runs.values() for s, _ in r.values()])[0]


def plot(roots, names, seeds, pairs, metric: str, path: str) -> dict:
  """One panel per pair a:b: each seed's metric under a and under b joined by a line (green
  where b is better), the means in black, the paired test in the title. Returns
  {(a, b): gains} as plotted."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = collect(roots, names, seeds)
  metric = metric or default_metric(runs)
  fig, axes = plt.subplots(1, len(pairs), figsize=(3.6 * len(pairs), 4), squeeze=False)
  plotted = {}
  for ax, (a, b) in zip(axes[0], pairs):
    g = gains(runs, a, b, metric)
    plotted[(a, b)] = g
    for seed, gain in g.items():
      ax.plot([0, 1], [runs[a][seed][0][metric], runs[b][seed][0][metric]], "o-", ms=3, lw=1,
              color="tab:green" if gain > 0 else "tab:red", alpha=0.7)
    if g:
      ax.plot([0, 1], [statistics.mean(runs[a][s][0][metric] for s in g),
                       statistics.mean(runs[b][s][0][metric] for s in g)], "ks-", lw=2)
    title = f"{len(g)} seeds"
    if len(g) >= 2:
      t, critical, _ = sweep.paired_t(list(g.values()))
      title = (f"gain {statistics.mean(g.values()):+.3g}, t = {t:+.2f} "
               f"(critical {critical:.2f}), {len(g)} seeds")
    ax.set_xticks([0, 1], [a, b], fontsize=8)
    ax.set_xlim(-0.3, 1.3)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return plotted


def parse_pairs(items, names):
  if not items:
    return [(names[0], n) for n in names[1:]]
  pairs = []
  for item in items:
    a, sep, b = item.partition(":")
    if not sep or a not in names or b not in names:
      raise app.UsageError(f"--pairs: {item!r} is not a:b with a and b in --names "
                           f"({', '.join(names)})")
    pairs.append((a, b))
  return pairs


def main(argv):
  del argv
  with exits.one_line_errors("paired.py"):
    for flag in ("runs", "names", "seeds"):
      if not flags.FLAGS[flag].value:
        raise app.UsageError(f"--{flag} is required")
    names, seeds = _NAMES.value, sweep.parse_seeds(_SEEDS.value)
    pairs = parse_pairs(_PAIRS.value, names)
    print(report(_RUNS.value, names, seeds, pairs, _METRIC.value))
    if _PLOT.value:
      plot(_RUNS.value, names, seeds, pairs, _METRIC.value, _PLOT.value)
      print(f"\nplot: {_PLOT.value}")


if __name__ == "__main__":
  app.run(main, flags_parser=exits.parse_flags)
