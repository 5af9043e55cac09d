"""Train a quantized model with STE, FOGZO or n-SPSA.

  python train.py --config=configs/mnist_mlp.py --workdir=runs/mnist [--config.x=y ...]
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from fogzo_jax.data import DataError
from fogzo_jax.train import ConfigError, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for metrics, summary and plots.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ConfigError, DataError) as e:
    sys.stderr.write(f"error: {e}\n")
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
