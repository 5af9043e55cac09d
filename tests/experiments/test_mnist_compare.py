"""experiments/mnist_compare.py: the paper's Sec. 4.1 sweep runs at the paper's rate, and reuses
a finished run only if it ran that config."""

import json
import os
import subprocess
import sys

from fogzo_jax.train.sweep import apply_overrides, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def finished_ste_run(out, learning_rate):
  """A finished STE seed-0 run folder as the sweep writes it, recorded at ``learning_rate``."""
  config = load_config(os.path.join(ROOT, "configs", "mnist_mlp.py"))
  apply_overrides(config, ["data.name=mnist", "num_epochs=10", "seed=0", "estimator.kind=ste"])
  config.optimizer.learning_rate = learning_rate
  folder = out / "ste" / "seed0"
  folder.mkdir(parents=True)
  (folder / "config.json").write_text(config.to_json())
  (folder / "summary.json").write_text(json.dumps(
      {"final_train_loss": 0.8, "test_loss": 0.7, "test_accuracy": 0.75,
       "forward_passes": 3510, "wall_time_s": 6.0}))
  rows = [{"forward_passes": 351 * e, "train_loss": 1.0 / e} for e in range(1, 11)]
  (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def sweep(out, *extra):
  return subprocess.run([sys.executable, "experiments/mnist_compare.py", f"--out={out}",
                         "--seeds=0", "--betas=", "--nspsa_n=", *extra], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


def test_reuses_a_run_at_the_papers_rate_and_refuses_one_at_another(tmp_path):
  paper = tmp_path / "paper"
  finished_ste_run(paper, 2e-3 * 512 / 32)  # the default: the paper's 0.032, not the config's
  proc = sweep(paper)
  assert proc.returncode == 0, proc.stderr
  assert "learning rate 0.032" in proc.stdout and "| ste | 1 | 0.8000 |" in proc.stdout
  assert (paper / "loss_vs_forward_passes.png").exists()
  other = tmp_path / "other"
  finished_ste_run(other, 6e-3)  # the config's rate: not the run this sweep asks for
  proc = sweep(other)
  assert proc.returncode == 2
  (line,) = proc.stderr.strip().splitlines()
  assert line.startswith("mnist_compare.py: ") and "another config" in line
  assert "learning_rate" in line
  assert sweep(other, "--learning_rate=0.006").returncode == 0  # asked for: reused
