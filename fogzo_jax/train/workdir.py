"""One run per workdir: an exclusive lock, the run's config, and metrics that match the state.

- ``lock``: ``fcntl.flock`` on ``<workdir>/.lock`` (the kernel releases it when the process
  ends, however it ends, so a stale lock cannot block a rerun); a second run on the same workdir
  is refused with the holder's pid and host.
- ``prepare``: ``config.json`` records the run's config (written atomically); a rerun with the
  same config (up to resume-safe fields) resumes, a different one is refused unless ``force``,
  which deletes the old run's checkpoints and metrics.
- ``truncate_metrics``: drops rows logged after the checkpoint a resumed run restarts from, and a
  partial last line left by a kill.
- ``log_to_file``: the libraries' log (orbax, jax, absl) goes to ``<workdir>/train.log``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import warnings

from fogzo_jax.train import config as config_lib

RUN_FILES = ("checkpoints", "checkpoints_rejected", "metrics.jsonl", "summary.json",
             "tensorboard", "curves.png")


class WorkdirLocked(RuntimeError):
  """Another process is training in this workdir."""


def lock(workdir: str):
  """Takes the workdir's exclusive lock; returns the open lock file (keep it open)."""
  os.makedirs(workdir, exist_ok=True)
  f = open(os.path.join(workdir, ".lock"), "a+")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise WorkdirLocked(f"workdir {workdir} is in use by {holder}: wait for that run to end, or "
                        "use another workdir") from None
  f.seek(0)
  f.truncate()
  f.write(f"pid {os.getpid()} on {socket.gethostname()}")
  f.flush()
  return f


def write_atomic(path: str, text: str) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def prepare(config_dict: dict, workdir: str, force: bool) -> None:
  """Records the config; refuses a workdir holding a run of an incompatible config."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, ValueError):
      old = None
    has_run = any(os.path.exists(os.path.join(workdir, n)) for n in ("checkpoints",
                                                                       "metrics.jsonl"))
    if old is None and has_run and not force:
      raise config_lib.ConfigError(f"workdir {workdir} holds a run whose config.json cannot be "
                                   "read; use --force to start afresh there, or another workdir")
    bad = config_lib.incompatible_fields(old or {}, config_dict) if old is not None else []
    if bad and not force:
      old_flat, new_flat = config_lib.flatten(old), config_lib.flatten(config_dict)
      raise config_lib.ConfigError(
          f"workdir {workdir} holds a run with a different config (fields: "
          f"{', '.join(f'{k}: {old_flat.get(k)!r} → {new_flat.get(k)!r}' for k in bad)}); use "
          "another workdir, or --force to start this config afresh there")
    if force and (bad or old is None):
      for name in RUN_FILES:
        target = os.path.join(workdir, name)
        if os.path.isdir(target):
          shutil.rmtree(target)
        elif os.path.exists(target):
          os.remove(target)
  write_atomic(path, json.dumps(config_dict, indent=2))


def read_metrics(path: str) -> list[dict]:
  """The complete rows of a metrics.jsonl file (a partial line from a kill is skipped)."""
  rows = []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          rows.append(json.loads(line))
        except ValueError:
          continue
  return rows


def truncate_metrics(path: str, step: int) -> None:
  """Keeps the rows up to ``step`` (the restored checkpoint)."""
  if os.path.exists(path):
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in read_metrics(path)
                                if r.get("step", 0) <= step))


def log_to_file(workdir: str):
  """Sends the libraries' log (orbax's and jax's INFO chatter, absl, Python warnings) to
  ``<workdir>/train.log`` instead of the terminal, which keeps the progress bar and the results.
  Returns a function that restores the previous logging (a sweep calls it after each run;
  train.py keeps the file to the end, its internal-error traceback included)."""
  os.makedirs(workdir, exist_ok=True)
  root = logging.getLogger()
  before = list(root.handlers), root.level, list(warnings.filters)
  for handler in before[0]:
    root.removeHandler(handler)
  handler = logging.FileHandler(os.path.join(workdir, "train.log"))
  handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
  root.addHandler(handler)
  root.setLevel(logging.INFO)
  logging.captureWarnings(True)
  warnings.simplefilter("default")

  def restore() -> None:
    root.removeHandler(handler)
    handler.close()
    for h in before[0]:
      root.addHandler(h)
    root.setLevel(before[1])
    logging.captureWarnings(False)
    warnings.filters[:] = before[2]
  return restore
