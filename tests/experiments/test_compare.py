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
