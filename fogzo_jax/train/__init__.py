"""Train state, step, loop, metrics and config validation."""

from fogzo_jax.train.config import ConfigError, validate
from fogzo_jax.train.loop import (Diverged, Preempted, TrainState, create_train_state, evaluate,
                                  forward_passes_per_step, make_optimizer, params_sha256,
                                  train_and_evaluate, train_step)
