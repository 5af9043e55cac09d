"""Training stack: config sections and validation, constructors, train state, step and loop."""

from fogzo_jax.train.checkpoints import CheckpointError
from fogzo_jax.train.config import ConfigError, default_config, validate
from fogzo_jax.train.loop import (Diverged, Preempted, Run, TrainState, build,
                                  create_train_state, evaluate, make_model, make_tx,
                                  params_sha256, train_and_evaluate, train_step)
from fogzo_jax.train.workdir import WorkdirLocked

__all__ = ["CheckpointError", "ConfigError", "Diverged", "Preempted", "Run", "TrainState",
           "WorkdirLocked", "build", "create_train_state", "default_config", "evaluate",
           "make_model", "make_tx", "params_sha256", "train_and_evaluate", "train_step",
           "validate"]
