"""How a fatal error of a run ends the process: one exit-code table for train.py and the sweep
scripts (experiments/), and one line on stderr that says what went wrong.

  0 done; 2 bad config, data or command line; 3 the run diverged (NaN/Inf); 4 the workdir is in
  use by another run; 5 checkpoints cannot be written or read; 130 / 143 stopped by SIGINT /
  SIGTERM after saving a checkpoint (rerun the same command to resume); 1 an internal error.
"""

import contextlib
import logging
import os
import sys


def exit_code(error: BaseException) -> int | None:
  """The exit code of a known fatal error of a run, or None for anything else (a bug)."""
  # Imported here: this module is imported by train.py before JAX, and a run's error classes are
  # loaded by then anyway (the run raised it).
  from fogzo_jax.data import DataError  # noqa: PLC0415
  from fogzo_jax.train.checkpoints import CheckpointError  # noqa: PLC0415
  from fogzo_jax.train.config import ConfigError  # noqa: PLC0415
  from fogzo_jax.train.loop import Diverged, Preempted  # noqa: PLC0415
  from fogzo_jax.train.workdir import WorkdirLocked  # noqa: PLC0415
  if isinstance(error, Preempted):
    return 130 if "SIGINT" in str(error) else 143
  for kinds, code in (((ConfigError, DataError), 2), ((Diverged,), 3), ((WorkdirLocked,), 4),
                      ((CheckpointError,), 5)):
    if isinstance(error, kinds):
      return code
  return None


def exit_now(code: int, message: str = "") -> None:
  """Prints one line and ends the process now: no library thread (grain's prefetch, orbax's
  async save) can keep it alive."""
  if message:
    sys.stderr.write(message.rstrip() + "\n")
  sys.stdout.flush()
  sys.stderr.flush()
  logging.shutdown()
  os._exit(code)  # pylint: disable=protected-access


@contextlib.contextmanager
def one_line_errors(script: str):
  """For a script that trains runs (a sweep): a run's known fatal error ends the process with
  its exit code and one line ``<script>: <what happened>``; anything else propagates with its
  traceback (a bug to report)."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    code = exit_code(e)
    if code is None:
      raise
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    exit_now(code, f"{script}: {text or type(e).__name__}")
