"""Metrics to JSONL and TensorBoard, the summary, and the loss-curve plot.

CLU's metric writers need TensorFlow, which this project does not require, so the TensorBoard
side uses tensorboardX; the JSONL file is the machine-readable record.
"""

from __future__ import annotations

import json
import os

from tensorboardX import SummaryWriter

from fogzo_jax.train import workdir as workdir_lib


class MetricWriter:
  """Writes ``{"step": s, **scalars}`` lines to ``metrics.jsonl`` and TensorBoard scalars.

  ``truncate_after``: a resumed run first drops the rows logged after its checkpoint.
  """

  def __init__(self, workdir: str, truncate_after: int = 0):
    self.path = os.path.join(workdir, "metrics.jsonl")
    workdir_lib.truncate_metrics(self.path, truncate_after)
    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict) -> None:
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n")
    for name, value in scalars.items():
      self._tb.add_scalar(name, float(value), int(step))
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()


def read_jsonl(path: str) -> list[dict]:
  return workdir_lib.read_metrics(path)


def write_summary(workdir: str, summary: dict) -> None:
  workdir_lib.write_atomic(os.path.join(workdir, "summary.json"),
                            json.dumps(summary, indent=2))


def plot_run(workdir: str, title: str = "") -> str:
  """Saves ``curves.png``: losses, and test accuracy (images) or validation perplexity (LMs)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  lm = any("val_loss" in r for r in rows)
  rows = [r for r in rows if ("val_loss" if lm else "test_loss") in r]
  steps = [r["step"] for r in rows]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
  for key in ("step_loss", "train_loss", "test_loss", "val_loss"):
    if rows and key in rows[0]:
      ax1.plot(steps, [r[key] for r in rows], marker="o", label=key)
  ax1.set_xlabel("step"), ax1.set_ylabel("cross-entropy"), ax1.legend(), ax1.grid(alpha=0.3)
  if lm:
    ax2.plot(steps, [r["val_perplexity"] for r in rows], marker="o", color="C2")
    ax2.set_ylabel("validation perplexity")
  else:
    ax2.plot(steps, [100 * r["test_accuracy"] for r in rows], marker="o", color="C2")
    ax2.set_ylabel("test accuracy (%)")
  ax2.set_xlabel("step"), ax2.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  path = os.path.join(workdir, "curves.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
