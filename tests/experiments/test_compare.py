"""experiments/compare.py: bad input ends it with one line and exit 2, before any run."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("flags, line", [
    (["--config=configs/nope.py"], "compare.py: cannot load the config: "),
    (["--config=configs/mnist_mlp.py", "--set=model.nope=3"],
     "compare.py: override 'model.nope=3': config has no field 'model.nope'"),
    (["--config=configs/mnist_mlp.py", "--seeds=0,x"],
     "compare.py: --seeds: '0,x' is not a list of integers ≥ 0")])
def test_bad_input_ends_compare_with_one_line(flags, line, tmp_path):
  proc = subprocess.run([sys.executable, "experiments/compare.py", *flags, f"--out={tmp_path}/o"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  (only,) = proc.stderr.strip().splitlines()
  assert only.startswith(line)
  assert not os.path.exists(tmp_path / "o")  # nothing written


def test_compare_writes_its_table_and_keeps_library_logs_in_each_run(tmp_path):
  """A two-step STE run: results.md is titled by the model, has the run's row, and orbax's INFO
  lines went to the run's train.log, not the terminal."""
  proc = subprocess.run([sys.executable, "experiments/compare.py", "--config=configs/mnist_mlp.py",
                         "--estimators=ste", "--seeds=0", "--set=num_train_steps=2",
                         f"--out={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  text = (tmp_path / "results.md").read_text()
  assert text.startswith("# mlp\n") and "| ste | 0 | " in text
  assert "orbax" not in proc.stderr and "CheckpointManager" in (
      tmp_path / "ste_s0" / "train.log").read_text()
