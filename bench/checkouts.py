"""The command-line checks that bench/data_throughput.py and bench/estimator_versions.py share:
counts that must be positive, and the checkouts to time (this one, and another commit's with
--old). No jax here: those scripts measure in subprocesses."""

import os

from absl import app

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout


def require_positive(**counts: int) -> None:
  """Refuses (``app.UsageError``) a flag value below 1, naming the flag."""
  for name, value in counts.items():
    if value < 1:
      raise app.UsageError(f"--{name} must be at least 1, not {value}")


def to_time(old: str | None) -> dict:
  """{"this": this checkout} and, with --old, "old": that folder, which must hold a checkout of
  this project (``app.UsageError`` otherwise)."""
  path = os.path.abspath(old) if old else ""
  if path and not os.path.isdir(os.path.join(path, "fogzo_jax")):
    raise app.UsageError(f"--old: {old!r} is not a checkout of this project (no fogzo_jax/ in "
                         f"it; make one with git worktree add)")
  return {"this": HERE, **({"old": path} if path else {})}
