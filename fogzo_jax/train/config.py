"""Training configs: the full field list with defaults, and validation before any work.

Every experiment config starts from ``default_config()`` and overrides numbers; ``validate``
checks every field once (type, range, allowed values, unknown fields, cross-field rules) and
raises ``ConfigError`` with one message naming the field.
"""

from __future__ import annotations

import ml_collections

from fogzo_jax.data.images import AUGMENTATIONS, NORMALIZATIONS
from fogzo_jax.data.mnist import SOURCES
from fogzo_jax.data.pipeline import DATASETS, TEXT_DATASETS
from fogzo_jax.data.text import TOKENIZERS
from fogzo_jax.estimators import EVALUATIONS, G_HAT_NORMS
from fogzo_jax.models import MODELS, TASKS, model_fields
from fogzo_jax.quant.layers import QUANT_KINDS
from fogzo_jax.quant.quest import GAUSSIAN_CLIP
from fogzo_jax.quant.ste import STE_KINDS

ESTIMATORS = ("ste", "fogzo", "nspsa")
DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field and what is allowed."""


def default_config() -> ml_collections.ConfigDict:
  """Every field a training config has, with its default (the MNIST MLP of the paper)."""
  c = ml_collections.ConfigDict()
  # Model and quantization.
  c.model = "mlp"
  c.model_kwargs = ml_collections.ConfigDict()  # extra model options (e.g. width=16 for tests)
  c.quant = "fixed"                 # 'none' | 'fixed' | 'lsq' | 'quest'
  c.bits = 2
  c.ste = "identity"                # 'identity' | 'hardtanh' | 'tanh' | 'approxsign'
  c.quantize_activations = False    # W+A: also quantize each quantized layer's input
  c.quantize_bias = False           # quantize biases with the kernel's step (MNIST MLP: True)
  c.quantize_per_channel = False    # fixed / LSQ: one weight step per output channel
  c.quantize_first_last = False     # LSQ recipe: first and last layers full precision
  c.dtype = "float32"               # compute dtype: 'float32' | 'bfloat16'
  c.param_dtype = "float32"         # parameter storage dtype: 'float32' | 'bfloat16'
  # Estimator.
  c.estimator = "fogzo"             # 'ste' | 'fogzo' | 'nspsa'
  c.num_perturbations = 1           # n
  c.beta_min = 0.999                # β decays linearly from 1 to beta_min over the FOGZO steps
  c.g_hat_norm = "unit"             # 'unit': ĝ = g/‖g‖; 'rms': √d·g/‖g‖; 'tensor': per leaf
  c.fogzo_start_fraction = 0.0      # > 0: plain STE for this fraction of steps, then FOGZO
  c.chunk_size = 1024               # perturbations vmapped at once (0 = all, capped at 2048)
  c.evaluation = "vmap"             # perturbed forwards: 'vmap' (batched) | 'sequential'
  # Optimisation.
  c.batch_size = 512
  c.learning_rate = 2e-3 * 512 / 32
  c.weight_decay = 0.01
  c.warmup_steps = 0                # linear warm-up (≤ half the steps), then cosine decay
  c.label_smoothing = 0.0
  c.num_epochs = 10
  c.num_train_steps = 0             # > 0 overrides num_epochs
  c.seed = 0
  # Data.
  c.dataset = "mnist"
  c.data_dir = ""                   # folder / file of the data ('' = tfds or shipped copy)
  c.data_source = "auto"            # MNIST-type data: 'auto' | 'idx' | 'tfds' | 'shipped'
  c.image_size = 0                  # 0: the data set's own (28 MNIST, 32 CIFAR, 224 ImageNet)
  c.augment = "none"                # 'none' | 'crop_flip' | 'deit'
  c.mixup = False                   # with augment='deit': Mixup/CutMix per batch
  c.normalize = "unit"              # 'unit' (x/255) | 'imagenet' (mean/std)
  c.eval_train = True               # also evaluate the training split (small in-memory data)
  c.eval_batch_size = 10000
  c.seq_len = 256                   # language models: tokens per sequence
  c.tokenizer = "byte"              # 'byte' | 'sentencepiece'
  c.tokenizer_path = ""             # SentencePiece model file
  c.tfds_name = ""                  # dataset 'c4': the tfds name ('' = 'c4/en')
  c.eval_tokens = 2_000_000         # dataset 'c4': validation tokens cached and evaluated
  # Loop.
  c.log_every_steps = 20
  c.eval_every_steps = 0            # 0: at the end of every epoch
  c.checkpoint_every_steps = 200    # 0: only at the end
  c.keep_checkpoints = 2
  c.distributed = False             # True: jax.distributed.initialize() (multi-host)
  c.fsdp = False                    # True: shard parameters and optimizer state over devices
  return c


FIELDS = tuple(default_config().keys())
"""Every field a training config has; anything else is refused."""

RESUME_SAFE = ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "data_dir",
               "data_source", "distributed", "eval_batch_size", "fsdp", "evaluation")
"""Fields that may change when a run resumes in the same workdir (they do not change results)."""


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


def _bool(config, field):
  if not isinstance(config[field], bool):
    raise ConfigError(f"config.{field} must be True or False; got {config[field]!r}")


def _string(config, field, what):
  if not isinstance(config[field], str):
    raise ConfigError(f"config.{field} must be a string {what}; got {config[field]!r}")


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
  if not hasattr(config.model_kwargs, "keys"):
    raise ConfigError(f"config.model_kwargs must be a dict of model options; got "
                      f"{config.model_kwargs!r}")
  allowed = set(model_fields(config.model)) - {"spec", "num_classes", "vocab_size",
                                               "quantize_first_last", "dtype", "param_dtype"}
  for key in config.model_kwargs.keys():
    if key not in allowed:
      raise ConfigError(f"config.model_kwargs.{key} is not an option of model "
                        f"{config.model!r}; options: {', '.join(sorted(allowed))}")
  _choice(config, "quant", QUANT_KINDS)
  _choice(config, "ste", STE_KINDS)
  _choice(config, "dtype", DTYPES)
  _choice(config, "param_dtype", DTYPES)
  _choice(config, "estimator", ESTIMATORS)
  _choice(config, "g_hat_norm", G_HAT_NORMS)
  _choice(config, "evaluation", EVALUATIONS)
  _choice(config, "dataset", DATASETS)
  _choice(config, "data_source", SOURCES + ("folder",))
  _choice(config, "augment", AUGMENTATIONS)
  _choice(config, "normalize", NORMALIZATIONS)
  _choice(config, "tokenizer", TOKENIZERS)
  _number(config, "bits", int, 1, 16)
  _number(config, "num_perturbations", int, 1)
  _number(config, "beta_min", (int, float), 0.0, 1.0)
  _number(config, "fogzo_start_fraction", (int, float), 0.0, 1.0)
  _number(config, "chunk_size", int, 0)
  _number(config, "batch_size", int, 1)
  _number(config, "learning_rate", (int, float), 0.0, low_open=True)
  _number(config, "weight_decay", (int, float), 0.0)
  _number(config, "warmup_steps", int, 0)
  _number(config, "label_smoothing", (int, float), 0.0, 1.0)
  _number(config, "num_epochs", int, 1)
  _number(config, "num_train_steps", int, 0)
  _number(config, "seed", int, 0)
  _number(config, "image_size", int, 0)
  _number(config, "eval_batch_size", int, 1)
  _number(config, "seq_len", int, 2)
  _number(config, "eval_tokens", int, 1)
  _number(config, "log_every_steps", int, 1)
  _number(config, "eval_every_steps", int, 0)
  _number(config, "checkpoint_every_steps", int, 0)
  _number(config, "keep_checkpoints", int, 1)
  for field in ("quantize_activations", "quantize_bias", "quantize_per_channel",
                "quantize_first_last", "mixup",
                "eval_train", "distributed", "fsdp"):
    _bool(config, field)
  _string(config, "data_dir", "path ('' for none)")
  _string(config, "tokenizer_path", "path to a SentencePiece model ('' for none)")
  _string(config, "tfds_name", "tensorflow-datasets name ('' for the default)")
  # Cross-field rules.
  if config.fogzo_start_fraction > 0 and config.estimator != "fogzo":
    raise ConfigError("config.fogzo_start_fraction > 0 needs config.estimator='fogzo'; got "
                      f"estimator {config.estimator!r}")
  if config.quant in ("lsq", "quest") and config.ste != "identity":
    raise ConfigError(f"config.ste must be 'identity' with config.quant={config.quant!r} (LSQ "
                      f"and QuEST have their own backward); got {config.ste!r}")
  if config.quant == "quest" and config.bits not in GAUSSIAN_CLIP:
    raise ConfigError(f"config.bits must be one of {sorted(GAUSSIAN_CLIP)} with quant='quest'; "
                      f"got {config.bits!r}")
  if config.quant == "quest" and config.model.startswith("resnet"):
    raise ConfigError("config.quant='quest' is for dense layers (LLaMA, DeiT); ResNets take "
                      "'fixed' or 'lsq'")
  if config.quant in ("none", "quest") and config.quantize_bias:
    raise ConfigError(f"config.quantize_bias needs config.quant 'fixed' or 'lsq'; got "
                      f"{config.quant!r}")
  if config.quant == "none" and config.estimator != "ste":
    raise ConfigError(f"config.estimator={config.estimator!r} perturbs quantized weights, but "
                      "config.quant='none' quantizes none; use quant 'fixed', 'lsq' or 'quest'")
  text = config.dataset in TEXT_DATASETS
  if text != (TASKS[config.model] == "lm"):
    raise ConfigError(f"config.dataset {config.dataset!r} is "
                      f"{'a text' if text else 'an image'} data set but config.model "
                      f"{config.model!r} takes {'tokens' if TASKS[config.model] == 'lm' else 'images'}")
  if config.tokenizer == "sentencepiece" and not config.tokenizer_path:
    raise ConfigError("config.tokenizer_path must name a SentencePiece model file when "
                      "config.tokenizer='sentencepiece'")
  if config.mixup and config.augment != "deit":
    raise ConfigError(f"config.mixup needs config.augment='deit'; got {config.augment!r}")


def incompatible_fields(old: dict, new: dict) -> list[str]:
  """Fields (outside RESUME_SAFE) whose values differ between two configs as dicts."""
  keys = (set(old) | set(new)) - set(RESUME_SAFE)
  return sorted(k for k in keys if old.get(k) != new.get(k))
