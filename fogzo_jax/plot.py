"""Overlay the curves of several runs in one figure.

  python -m fogzo_jax.plot runs/ste runs/fogzo [--out=compare.png] [--x=step|forward_passes]

Reads each RUN_DIR's metrics.jsonl (rows with test metrics) and plots train/test loss and test
accuracy against the step or the forward passes spent, one colour per run.
"""

from __future__ import annotations

import argparse
import os
import sys

from fogzo_jax.train.metrics import read_jsonl


def plot_runs(run_dirs: list[str], out: str, x: str = "step") -> str:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  for i, run in enumerate(run_dirs):
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
      raise FileNotFoundError(f"{run} has no metrics.jsonl")
    rows = read_jsonl(path)
    lm = any("val_loss" in r for r in rows)
    rows = [r for r in rows if ("val_loss" if lm else "test_loss") in r]
    xs = [r[x] for r in rows]
    name = os.path.basename(os.path.normpath(run))
    if lm:
      ax1.plot(xs, [r["val_loss"] for r in rows], "-", color=f"C{i}", label=f"{name} val")
      ax2.plot(xs, [r["val_perplexity"] for r in rows], "-", color=f"C{i}", label=name)
      continue
    if rows and "train_loss" in rows[0]:
      ax1.plot(xs, [r["train_loss"] for r in rows], "-", color=f"C{i}", label=f"{name} train")
    ax1.plot(xs, [r["test_loss"] for r in rows], ":", color=f"C{i}", label=f"{name} test")
    ax2.plot(xs, [100 * r["test_accuracy"] for r in rows], "-", color=f"C{i}", label=name)
  for ax, label in ((ax1, "loss"), (ax2, "validation perplexity" if lm else
                                     "test accuracy (%)")):
    ax.set_xlabel(x.replace("_", " ")), ax.set_ylabel(label), ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if x == "forward_passes":
    ax1.set_xscale("log"), ax2.set_xscale("log")
  fig.tight_layout()
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
  parser.add_argument("run_dirs", nargs="+")
  parser.add_argument("--out", default="compare.png")
  parser.add_argument("--x", default="step", choices=("step", "forward_passes"))
  args = parser.parse_args(argv)
  try:
    print(plot_runs(args.run_dirs, args.out, args.x))
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
