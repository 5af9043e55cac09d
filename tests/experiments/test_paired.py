"""experiments/paired.py: the study's paired test read from run folders, pooled over roots."""

import json
import os
import subprocess
import sys

import pytest
from absl import app

import paired

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(root, name, seed, value, metric="val_perplexity", curve=()):
  folder = root / f"{name}_s{seed}"
  folder.mkdir(parents=True)
  (folder / "summary.json").write_text(json.dumps({metric: value, "seed": seed}))
  rows = [{"step": step, metric: v} for step, v in curve] + [{"step": 99, "step_loss": 1.5}]
  (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_pools_roots_in_order_and_signs_gains_by_metric(tmp_path):
  cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
  for seed, (a, b) in {3: (5.0, 4.9), 4: (5.1, 4.95), 10: (5.2, 5.0)}.items():
    write(gpu if seed < 10 else cpu, "ste", seed, a, curve=[(50, a + 1)])
    write(gpu if seed < 10 else cpu, "fz", seed, b, curve=[(50, b + 1)])
  write(cpu, "ste", 3, 9.9)  # the first root that has a run wins: this one, not the GPU's
  (cpu / "fz_s11").mkdir()  # started, not finished: not counted
  text = paired.report([str(gpu), str(cpu)], ["ste", "fz"], [3, 4, 10, 11], [("ste", "fz")])
  assert "| ste | 5 | 5.1 | 5.2 | not finished | 5.1 ± 0.1 | 1.5 ± 0 |" in text
  assert "| step 50 |" in text and "| fz | 5.95 |" in text  # mean over seeds at step 50
  (test,) = [x for x in text.splitlines() if x.startswith("- ")]
  assert test.startswith("- fz vs ste, seeds 3,4,10: +0.100, +0.150, +0.200; mean +0.150 "
                         "[+0.026, +0.274]")  # ± t(0.975, 2 dof) · 0.05 / √3
  assert "critical 4.303, 2 dof" in test and test.endswith("fz beats ste")  # lower is better
  acc = tmp_path / "acc"
  for seed, (a, b) in {0: (0.80, 0.81), 1: (0.82, 0.80)}.items():
    write(acc, "ste", seed, a, "test_accuracy")
    write(acc, "fz", seed, b, "test_accuracy")
  text = paired.report([str(acc)], ["ste", "fz"], [0, 1], [("ste", "fz")])
  assert "+0.010, -0.020" in text and text.endswith("fz ties ste")  # higher is better
  one = paired.report([str(acc)], ["ste", "fz"], [0], [("ste", "fz")])
  assert one.endswith("fz vs ste: fewer than 2 seeds with both (1)")


def test_bad_input_is_refused_in_one_line(tmp_path):
  with pytest.raises(app.UsageError, match="no finished run of ste"):
    paired.report([str(tmp_path)], ["ste"], [0, 1], [])
  write(tmp_path, "ste", 0, 5.0)
  with pytest.raises(app.UsageError, match="--metric: 'test_accuracy' is not in every"):
    paired.report([str(tmp_path)], ["ste"], [0], [], "test_accuracy")
  with pytest.raises(app.UsageError, match="--pairs: 'ste:x' is not a:b"):
    paired.parse_pairs(["ste:x"], ["ste", "fz"])
  assert paired.parse_pairs([], ["ste", "a", "b"]) == [("ste", "a"), ("ste", "b")]
  proc = subprocess.run([sys.executable, "experiments/paired.py", f"--runs={tmp_path}",
                         "--names=ste", "--seeds=1,x"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "paired.py: --seeds: '1,x' is not a list of integers ≥ 0 (e.g. 3,4,5)"]


def test_plot_draws_each_pairs_seeds_with_the_same_gains_as_the_test(tmp_path):
  for seed, (a, b) in {0: (1.0, 0.9), 1: (1.2, 1.3), 2: (0.8, 0.7)}.items():
    write(tmp_path, "ste", seed, a, "final_train_loss")
    write(tmp_path, "fz", seed, b, "final_train_loss")
  path = tmp_path / "pairs.png"
  plotted = paired.plot([str(tmp_path)], ["ste", "fz"], [0, 1, 2, 3], [("ste", "fz")],
                        "final_train_loss", str(path))
  gains = plotted[("ste", "fz")]
  assert list(gains) == [0, 1, 2]  # seed 3 never ran: not drawn
  assert [round(g, 6) for g in gains.values()] == [0.1, -0.1, 0.1]  # lower loss is better
  assert path.stat().st_size > 1000
  proc = subprocess.run([sys.executable, "experiments/paired.py", f"--runs={tmp_path}",
                         "--names=ste,fz", "--seeds=0,1,2", "--metric=final_train_loss",
                         f"--plot={tmp_path / 'cli.png'}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert (tmp_path / "cli.png").exists() and "plot: " in proc.stdout
