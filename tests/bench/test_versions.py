"""bench/data_throughput.py and bench/estimator_versions.py: bad input and a failed measurement
end the script with one line and a non-zero exit code."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(script, *flags):
  return subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *flags],
                        capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("script, flag, line", [
    ("data_throughput.py", "--warmup=0", "data_throughput.py: --warmup must be at least 1, not 0"),
    ("data_throughput.py", "--cifar=/nonexistent",
     "data_throughput.py: --cifar: '/nonexistent' holds neither train/ and test/ folders"),
    ("data_throughput.py", "--old=/", "data_throughput.py: --old: '/' is not a checkout of this"),
    ("estimator_versions.py", "--steps=0",
     "estimator_versions.py: --steps must be at least 1, not 0"),
    ("estimator_versions.py", "--nope", "estimator_versions.py: Unknown command line flag 'nope'"),
])
def test_bad_input_is_one_line(script, flag, line, tmp_path):
  proc = run(script, flag, f"--out={tmp_path / 'out.json'}")
  assert proc.returncode == 2
  (only,) = proc.stderr.strip().splitlines()
  assert only.startswith(line)
  assert not (tmp_path / "out.json").exists()


def test_a_failed_measurement_is_one_line_naming_the_checkout_and_the_row(tmp_path):
  broken = tmp_path / "old"  # a checkout whose package cannot be imported
  (broken / "fogzo_jax").mkdir(parents=True)
  (broken / "fogzo_jax" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
  out = tmp_path / "out.json"
  proc = run("estimator_versions.py", f"--old={broken}", "--steps=1", "--repeats=1",
             f"--out={out}")
  assert proc.returncode == 1
  (only,) = proc.stderr.strip().splitlines()
  assert only.startswith(f"estimator_versions.py: mlp_784_10_10 fogzo n=1 in {broken} failed (")
  assert "broken on purpose" in only and not out.exists()  # the first row failed: none kept
