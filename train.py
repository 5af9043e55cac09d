"""Train a quantized model with STE, FOGZO or n-SPSA.

  python train.py --config=configs/mnist_mlp.py --workdir=runs/mnist [--config.section.field=v ...]

Exit codes (the table of fogzo_jax/train/exits.py): 0 done; 2 bad config, data or command line;
3 the run diverged (NaN/Inf); 4 the workdir is in use by another run; 5 checkpoints cannot be
written or read; 130 / 143 stopped by SIGINT / SIGTERM after saving a checkpoint (rerun the same
command to resume); 1 an internal error (its traceback is in <workdir>/train.log). Every fatal
error prints one line on stderr.
"""

import difflib
import logging
import os
import traceback

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics, summary and "
                                "plots; a rerun of the same command resumes from it.")
_FORCE = flags.DEFINE_bool("force", False, "Start afresh in a workdir that holds a run of a "
                           "different config (its checkpoints and metrics are deleted).")


def _exit(code: int, message: str = "") -> None:
  """Prints one line and ends the process now (fogzo_jax.train.exits, imported only here: the
  package pulls in JAX)."""
  from fogzo_jax.train import exits  # pylint: disable=import-outside-toplevel
  exits.exit_now(code, message)


def _config_fields(argv) -> list:
  """The dotted field names of the config file named by --config (empty if it cannot load)."""
  spec = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), None)
  try:
    from fogzo_jax.train import config, sweep  # pylint: disable=import-outside-toplevel
    return list(config.flatten(sweep.load_config(spec).to_dict()))
  except Exception:  # pylint: disable=broad-except
    return []


def _parse_flags(argv):
  """absl's parsing, with a bad flag or config override reported in one line (exit 2)."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except  # flags.Error, or a config override's
    fields = _config_fields(argv)
    unknown = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")
               and a.split("=")[0][len("--config."):] not in fields]
    if fields and unknown:
      close = difflib.get_close_matches(unknown[0][len("--config."):], fields, n=1)
      hint = f" (did you mean --config.{close[0]}?)" if close else ""
      _exit(2, f"error: {unknown[0]} is not a field of the config{hint}")
    lines = [line.strip() for line in str(e).replace("\\n", "\n").splitlines() if line.strip()]
    text = lines[0] + (f" … {lines[-1]}" if len(lines) > 1 else "") if lines else repr(e)
    _exit(2, f"error: {text}")


def main(argv):
  if len(argv) > 1:
    _exit(2, f"error: unexpected arguments {argv[1:]}; overrides look like "
             "--config.section.field=value")
  if not _CONFIG.value or not _WORKDIR.value:
    _exit(2, "error: --config=<configs/file.py> and --workdir=<folder> are required")
  from fogzo_jax.train import (  # pylint: disable=import-outside-toplevel
      Preempted, exits, sweep, train_and_evaluate, validate)
  from fogzo_jax.train import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  workdir = _WORKDIR.value
  try:
    config = sweep.flag_config(_CONFIG)  # ml_collections loads lazily: fail here, in one line
    validate(config)  # a bad config touches nothing, not even the workdir
    workdir_lib.log_to_file(workdir)  # the libraries' log: <workdir>/train.log
    train_and_evaluate(config, workdir, force=_FORCE.value)
  except Exception as e:  # pylint: disable=broad-except
    code = exits.exit_code(e)  # the table in fogzo_jax/train/exits.py, shared with the sweeps
    if code is not None:
      _exit(code, str(e) if isinstance(e, Preempted) else f"error: {e}")
    logging.error("internal error:\n%s", traceback.format_exc())
    where = os.path.join(workdir, "train.log")
    _exit(1, f"error: internal error ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
             f"); the traceback is in {where}")
  _exit(0)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
