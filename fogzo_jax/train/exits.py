"""How a fatal error ends the process: one exit-code table for train.py, the sweep scripts
(experiments/) and the benchmarks (bench/), and one line on stderr that says what went wrong.

  0 done; 2 bad config, data or command line (absl's ``app.UsageError`` in a script); 3 the run
  diverged (NaN/Inf); 4 the workdir is in use by another run; 5 checkpoints cannot be written or
  read; 130 / 143 stopped by SIGINT / SIGTERM after saving a checkpoint (rerun the same command
  to resume); 1 an internal error.
"""

import contextlib
import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging

from fogzo_jax.data import DataError
from fogzo_jax.train.checkpoints import CheckpointError
from fogzo_jax.train.config import ConfigError
from fogzo_jax.train.loop import Diverged, Preempted
from fogzo_jax.train.workdir import WorkdirLocked


def exit_code(error: BaseException) -> int | None:
  """The exit code of a known fatal error, or None for anything else (a bug)."""
  if isinstance(error, Preempted):
    return 130 if "SIGINT" in str(error) else 143
  for kinds, code in (((app.UsageError, ConfigError, DataError), 2), ((Diverged,), 3),
                      ((WorkdirLocked,), 4), ((CheckpointError,), 5)):
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
  """For a script that trains runs (a sweep) or measures (bench/): a bad command line
  (``app.UsageError``) or a run's known fatal error ends the process with its exit code and one
  line ``<script>: <what happened>``, not absl's usage text or a traceback; anything else
  propagates with its traceback (a bug to report)."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    code = exit_code(e)
    if code is None:
      raise
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    exit_now(code, f"{script}: {text or type(e).__name__}")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing for ``app.run(main, flags_parser=exits.parse_flags)``: an unknown,
  missing or malformed flag is exit 2 with one line ``<script>: <what is wrong>``, not absl's
  two-line FATAL text (train.py adds a did-you-mean for config fields).

  The terminal gets warnings and errors only (absl's ``--verbosity`` defaults to WARNING here):
  at INFO, jax's backend search ("Unable to initialize backend 'tpu'") and orbax's chatter would
  be printed among the script's results. ``--verbosity=0`` brings them back; a sweep's runs keep
  their INFO log in train.log (``workdir.log_to_file``)."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    exit_now(2, f"{os.path.basename(argv[0])}: {' '.join(lines) or type(e).__name__}")
  if not flags.FLAGS["verbosity"].present:
    flags.FLAGS.verbosity = absl_logging.WARNING  # absl applies it when app.run starts logging
  return rest
