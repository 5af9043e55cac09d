"""Train a quantized model with STE, FOGZO or n-SPSA.

  python train.py --config=configs/mnist_mlp.py --workdir=runs/mnist [--config.x=y ...]
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from fogzo_jax.data import DataError
from fogzo_jax.train import ConfigError, Diverged, Preempted, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics, summary and "
                                "plots; a rerun of the same command resumes from it.")
_FORCE = flags.DEFINE_bool("force", False, "Start afresh in a workdir that holds a run of a "
                           "different config (its checkpoints and metrics are deleted).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    train_and_evaluate(_CONFIG.value, _WORKDIR.value, force=_FORCE.value)
  except (ConfigError, DataError) as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(2)
  except Diverged as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(3)
  except Preempted as e:
    sys.stderr.write(f"{e}\n")
    sys.exit(143)


if __name__ == "__main__":
  app.run(main)
