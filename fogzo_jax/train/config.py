"""Config validation: every field is checked once, before any work, with one clear message."""

from __future__ import annotations

import ml_collections

from fogzo_jax.data.mnist import DATASETS, SOURCES
from fogzo_jax.estimators import G_HAT_NORMS
from fogzo_jax.models import MODELS
from fogzo_jax.quant.ste import STE_KINDS

ESTIMATORS = ("ste", "fogzo", "nspsa")


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field and what is allowed."""


def _choice(config, field, allowed):
  if config[field] not in allowed:
    raise ConfigError(f"config.{field} must be one of {', '.join(map(repr, allowed))}; "
                      f"got {config[field]!r}")


def _number(config, field, kind, low, high=None, low_open=False):
  value = config[field]
  ok = isinstance(value, kind) and not isinstance(value, bool)
  if ok:
    ok = value > low if low_open else value >= low
    ok = ok and (high is None or value <= high)
  if not ok:
    bound = f"{'>' if low_open else '≥'} {low}" + ("" if high is None else f" and ≤ {high}")
    kind_name = "an integer" if kind is int else "a number"
    raise ConfigError(f"config.{field} must be {kind_name} {bound}; got {value!r}")


FIELDS = ("model", "estimator", "num_perturbations", "beta_min", "g_hat_norm",
          "fogzo_start_fraction", "ste",
          "bits", "batch_size", "learning_rate", "weight_decay", "num_epochs", "num_train_steps",
          "seed", "dataset", "data_dir", "data_source", "chunk_size", "log_every_steps",
          "eval_every_steps", "checkpoint_every_steps", "keep_checkpoints", "distributed")
"""Every field a training config has; anything else is refused."""

RESUME_SAFE = ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "data_dir",
               "data_source", "distributed")
"""Fields that may change when a run resumes in the same workdir (they do not change results)."""


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad field (missing, unknown, wrong type or range)."""
  for field in FIELDS:
    if field not in config:
      raise ConfigError(f"config.{field} is missing")
  unknown = sorted(set(config.keys()) - set(FIELDS))
  if unknown:
    raise ConfigError(f"config.{unknown[0]} is not a known field; known fields: "
                      f"{', '.join(FIELDS)}")
  _choice(config, "model", tuple(MODELS))
  _choice(config, "estimator", ESTIMATORS)
  _choice(config, "ste", STE_KINDS)
  _choice(config, "g_hat_norm", G_HAT_NORMS)
  _choice(config, "dataset", DATASETS)
  _choice(config, "data_source", SOURCES)
  _number(config, "num_perturbations", int, 1)
  _number(config, "beta_min", (int, float), 0.0, 1.0)
  _number(config, "fogzo_start_fraction", (int, float), 0.0, 1.0)
  _number(config, "bits", int, 1, 16)
  _number(config, "batch_size", int, 1)
  _number(config, "learning_rate", (int, float), 0.0, low_open=True)
  _number(config, "weight_decay", (int, float), 0.0)
  _number(config, "num_epochs", int, 1)
  _number(config, "num_train_steps", int, 0)
  _number(config, "seed", int, 0)
  _number(config, "chunk_size", int, 0)
  _number(config, "log_every_steps", int, 1)
  _number(config, "eval_every_steps", int, 0)
  _number(config, "checkpoint_every_steps", int, 0)
  _number(config, "keep_checkpoints", int, 1)
  if not isinstance(config.data_dir, str):
    raise ConfigError(f"config.data_dir must be a string path ('' for none); "
                      f"got {config.data_dir!r}")
  if not isinstance(config.distributed, bool):
    raise ConfigError(f"config.distributed must be True or False; got {config.distributed!r}")
  if config.fogzo_start_fraction > 0 and config.estimator != "fogzo":
    raise ConfigError("config.fogzo_start_fraction > 0 needs config.estimator='fogzo'; got "
                      f"estimator {config.estimator!r}")


def incompatible_fields(old: dict, new: dict) -> list[str]:
  """Fields (outside RESUME_SAFE) whose values differ between two configs as dicts."""
  keys = (set(old) | set(new)) - set(RESUME_SAFE)
  return sorted(k for k in keys if old.get(k) != new.get(k))
