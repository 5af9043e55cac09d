"""fogzo_jax/train/exits.py: one exit-code table for train.py and the sweep scripts."""

import subprocess
import sys

import pytest
from absl import app

from fogzo_jax.data import DataError
from fogzo_jax.train import (CheckpointError, ConfigError, Diverged, Preempted, WorkdirLocked,
                             exits)


@pytest.mark.parametrize("error, code", [
    (ConfigError("x"), 2), (DataError("x"), 2), (Diverged("x"), 3), (WorkdirLocked("x"), 4),
    (CheckpointError("x"), 5), (Preempted("SIGINT at step 3: checkpoint saved"), 130),
    (Preempted("SIGTERM at step 3: checkpoint saved"), 143), (ValueError("x"), None),
    (app.UsageError("--rows: unknown"), 2), (KeyError("x"), None)])
def test_exit_code_of_each_fatal_error(error, code):
  assert exits.exit_code(error) == code


@pytest.fixture
def exited(monkeypatch):
  """exit_now records (code, message) and raises SystemExit instead of ending pytest."""
  calls = []

  def fake(code, message=""):
    calls.append((code, message))
    raise SystemExit(code)
  monkeypatch.setattr(exits, "exit_now", fake)
  return calls


def test_a_known_fatal_error_ends_a_sweep_in_one_line_with_its_code(exited):
  with pytest.raises(SystemExit):
    with exits.one_line_errors("sweep.py"):
      raise Diverged("loss became nan at step 7\n(see metrics.jsonl)")
  assert exited == [(3, "sweep.py: loss became nan at step 7 (see metrics.jsonl)")]


def test_a_bug_keeps_its_traceback_and_no_error_exits_nothing(exited):
  with pytest.raises(KeyError):
    with exits.one_line_errors("sweep.py"):
      raise KeyError("a bug")
  with exits.one_line_errors("sweep.py"):
    pass
  assert exited == []


SCRIPT = """
import logging
from absl import app
import jax
from fogzo_jax.train import exits
def main(_):
  jax.devices()
  logging.info("an info line")
  logging.warning("a warning line")
app.run(main, flags_parser=exits.parse_flags)
"""


@pytest.mark.parametrize("verbosity, shown", [(None, False), ("--verbosity=0", True)])
def test_scripts_print_warnings_not_library_info(tmp_path, verbosity, shown):
  script = tmp_path / "script.py"
  script.write_text(SCRIPT)
  out = subprocess.run([sys.executable, str(script)] + ([verbosity] if verbosity else []),
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert "a warning line" in out.stderr
  assert ("an info line" in out.stderr) == shown
  if not shown:  # jax's backend search, at INFO
    assert "Unable to initialize backend" not in out.stderr
