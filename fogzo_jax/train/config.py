"""Training configs: sections that feed constructors unchanged, and validation before any work.

A config is nested like big_vision's and nanodo's: each section goes, as it is, to the one
constructor that consumes it, and a reader finds where a field is used by its section::

  config.model      → models.get_model(**config.model, spec=…, num_classes | vocab_size=<data>)
  config.quant      → quant.QuantSpec(**config.quant)
  config.estimator  → train.optim.make_estimator(**config.estimator, …)   # ste | fogzo | nspsa
                                                                          # | gradient_noise
  config.optimizer  → train.optim.make_optimizer(**config.optimizer, …)   # AdamW + cosine
  config.data       → data.make_pipeline(**config.data, …)

plus a few top-level fields of the loop (seed, steps, logging, checkpoints, devices). Overrides
on the command line name the section: ``--config.estimator.beta_min=0.9``.

``validate`` runs every constructor's own argument check (each names its argument; the section
is prefixed here, "config.estimator.beta_min must be …"), refuses unknown fields, and checks the
rules that span sections. Nothing is read or written before it passes.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from fogzo_jax import checks


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field and what is allowed."""


def default_config() -> ml_collections.ConfigDict:
  """Every field a training config has, with its default (the MNIST MLP of the paper)."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(name="mlp"))   # + the model's own options
  c.quant = ml_collections.ConfigDict(dict(
      kind="fixed",             # 'none' | 'fixed' | 'lsq' | 'quest'
      bits=2,
      ste="identity",           # 'identity' | 'hardtanh' | 'tanh' | 'approxsign'
      activations=False,        # W+A: also quantize each quantized layer's input
      bias=False,               # quantize biases with the kernel's step (MNIST MLP: True)
      per_channel=False))       # fixed / LSQ: one weight step per output channel
  c.estimator = ml_collections.ConfigDict(dict(
      kind="fogzo",             # 'ste' | 'fogzo' | 'nspsa' | 'gradient_noise' (ours)
      num_perturbations=1,      # n
      beta_min=0.999,           # β decays linearly from 1 to beta_min over the FOGZO steps
      noise_share=config_dict.placeholder(float),  # ours: the final ρ = ‖noise‖/‖STE part‖
      g_hat_norm="unit",        # 'unit' (paper) | 'rms' | 'tensor' (ours)
      g_hat_clip=config_dict.placeholder(object),  # ours: a float, or 'half_step' = 1/(2ε̄)
      smoothed_base=False,      # ours: the ± pair around θ + ε⊙u₀
      difference="loss",        # 'loss' (paper) | 'ste_linear' (ours: ablation, no ZO information)
      skip_zero_grad=False,     # ours: no perturbation / noise where the STE gradient is 0
      start_fraction=0.0,       # > 0: plain STE for this fraction of the steps, then FOGZO
      chunk_size=1024,          # perturbations vmapped at once (None = all, capped at 2048)
      evaluation="vmap",        # perturbed forwards: 'vmap' (batched) | 'sequential'
      only_zero_grad=False))    # ours, gradient_noise only: noise only where the STE gradient is 0
  c.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=2e-3 * 512 / 32,
      weight_decay=0.01,
      warmup_steps=0,           # linear warm-up (≤ half the steps), then cosine decay
      step_size_lr_factor=1.0,  # ours: LSQ's learned step sizes at this × the rate (1 = paper)
      eps=1e-8,                 # AdamW's ε (optax's default)
      noise_floor_share=0.0,    # ours, a probe: the gradient-noise control's damping, no noise
      update_noise_share=0.0,   # ours, a probe: noise after Adam's normalisation, no damping
      clip_to_range=False))     # ours: keep weights in [lo·α, hi·α] (BinaryConnect); fixed α
  c.data = ml_collections.ConfigDict(dict(
      name="mnist",
      batch_size=512,           # global batch (all processes)
      eval_batch_size=10000,
      data_dir="",              # folder / file of the data ('' = tfds or the shipped copy)
      source="auto",            # MNIST-type data: 'auto' | 'idx' | 'tfds' | 'shipped'
      image_size=0,             # 0: the data set's own (28 MNIST, 32 CIFAR, 224 ImageNet)
      augment="none",           # 'none' | 'crop_flip' | 'deit'
      mixup=False,              # with augment='deit': Mixup/CutMix per batch
      normalize="unit",         # 'unit' (x/255) | 'imagenet' (mean/std)
      eval_train=True,          # also evaluate the training split (small in-memory data)
      seq_len=256,              # language models: tokens per sequence
      tokenizer="byte",         # 'byte' | 'sentencepiece'
      tokenizer_path="",        # SentencePiece model file
      tfds_name="",             # dataset 'c4': the tfds name ('' = 'c4/en')
      eval_tokens=2_000_000))   # dataset 'c4': validation tokens cached and evaluated
  c.label_smoothing = 0.0
  c.num_epochs = 10
  c.num_train_steps = 0         # > 0 overrides num_epochs
  c.log_every_steps = 20
  c.eval_every_steps = 0        # 0: at the end of every epoch
  c.checkpoint_every_steps = 200  # 0: only at the end
  c.keep_checkpoints = 2
  c.distributed = False         # True: jax.distributed.initialize() (multi-host)
  c.fsdp = False                # True: shard parameters and optimizer state over devices
  return c


SECTIONS = ("model", "quant", "estimator", "optimizer", "data")

RESUME_SAFE = ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints", "data.data_dir",
               "data.source", "data.eval_batch_size", "distributed", "fsdp",
               "estimator.evaluation")
"""Fields that may change when a run resumes in the same workdir (they do not change results)."""


def _checkers():
  """section → check(**section) of its constructor (imported here: they load Flax, optax)."""
  from fogzo_jax import data, models  # pylint: disable=import-outside-toplevel
  from fogzo_jax.quant.layers import QuantSpec  # pylint: disable=import-outside-toplevel
  from fogzo_jax.train import optim  # pylint: disable=import-outside-toplevel
  return {"model": models.check_args, "quant": lambda **kw: QuantSpec(**kw),
          "estimator": optim.check_estimator_args, "optimizer": optim.check_optimizer_args,
          "data": data.check_args}


def _loop_fields(c) -> None:
  checks.number("num_epochs", c.num_epochs, int, 1)
  checks.number("num_train_steps", c.num_train_steps, int, 0)
  checks.number("seed", c.seed, int, 0)
  checks.number("label_smoothing", c.label_smoothing, float, 0.0, 1.0)
  checks.number("log_every_steps", c.log_every_steps, int, 1)
  checks.number("eval_every_steps", c.eval_every_steps, int, 0)
  checks.number("checkpoint_every_steps", c.checkpoint_every_steps, int, 0)
  checks.number("keep_checkpoints", c.keep_checkpoints, int, 1)
  checks.boolean("distributed", c.distributed)
  checks.boolean("fsdp", c.fsdp)


def _suggest(name: str, known) -> str:
  import difflib  # pylint: disable=import-outside-toplevel
  close = difflib.get_close_matches(name, known, n=1)
  return f" (did you mean {close[0]!r}?)" if close else ""


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad field (missing, unknown, wrong type or range)."""
  reference = default_config()
  for field in config.keys():
    if field not in reference:
      raise ConfigError(f"config.{field} is not a known field{_suggest(field, reference.keys())}; "
                        f"known: {', '.join(reference.keys())}")
  for field in reference.keys():
    if field not in config:
      raise ConfigError(f"config.{field} is missing")
  try:
    _loop_fields(config)
  except ValueError as e:
    raise ConfigError(f"config.{e}") from None
  for section, check in _checkers().items():
    if not hasattr(config[section], "keys"):
      raise ConfigError(f"config.{section} must be a section (a dict of fields); got "
                        f"{config[section]!r}")
    known = set(reference[section].keys())
    if section != "model":  # the model's options are its constructor's (checked there)
      for field in config[section].keys():
        if field not in known:
          raise ConfigError(f"config.{section}.{field} is not a known field"
                            f"{_suggest(field, known)}; known: {', '.join(sorted(known))}")
    try:
      check(**config[section].to_dict())
    except (ValueError, TypeError) as e:
      raise ConfigError(f"config.{section}.{e}") from None
  _cross_section_rules(config)


def _cross_section_rules(c) -> None:
  from fogzo_jax import data, models  # pylint: disable=import-outside-toplevel
  est, quant = c.estimator, c.quant
  if est.kind != "ste" and quant.kind == "none":
    raise ConfigError(f"config.estimator.kind={est.kind!r} perturbs quantized weights, but "
                      "config.quant.kind='none' quantizes none; use 'fixed', 'lsq' or 'quest'")
  if c.optimizer.clip_to_range and quant.kind not in ("fixed", "lsq"):
    raise ConfigError(f"config.optimizer.clip_to_range=True needs config.quant.kind 'fixed' or "
                      f"'lsq' (a range that does not depend on the weight); got {quant.kind!r}")
  if quant.kind == "quest" and c.model.name.startswith("resnet"):
    raise ConfigError("config.quant.kind='quest' is for dense layers (LLaMA, DeiT); ResNets "
                      "take 'fixed' or 'lsq'")
  task = models.TASKS[c.model.name]
  if (c.data.name in data.TEXT_DATASETS) != (task == "lm"):
    raise ConfigError(f"config.data.name {c.data.name!r} is "
                      f"{'a text' if task != 'lm' else 'an image'} data set but config.model.name "
                      f"{c.model.name!r} takes {'tokens' if task == 'lm' else 'images'}")
  if c.model.name.startswith("deit"):
    size = c.data.image_size or data.NATIVE_SIZE.get(c.data.name, 224)
    patch = models.resolve_patch_size(c.model.get("patch_size", 0), size)
    if size % patch:
      raise ConfigError(f"config.data.image_size {size} is not divisible by the patch size "
                        f"{patch} of {c.model.name}; use a multiple of {patch} (or set "
                        "config.model.patch_size)")


def flatten(config: dict, prefix: str = "") -> dict:
  """{"a": {"b": 1}} → {"a.b": 1}."""
  out = {}
  for key, value in config.items():
    if isinstance(value, dict):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def incompatible_fields(old: dict, new: dict) -> list[str]:
  """Fields (outside RESUME_SAFE) whose values differ between two configs given as dicts. A
  field the old config lacks (added to the code after that run started) counts as equal when
  the new config has it at its default, which keeps the old behaviour."""
  import json  # pylint: disable=import-outside-toplevel
  old, new, defaults = (flatten(json.loads(json.dumps(c, default=str)))
                        for c in (old, new, default_config().to_dict()))
  keys = (set(old) | set(new)) - set(RESUME_SAFE)
  return sorted(k for k in keys if old.get(k) != new.get(k) and not (
      k not in old and k in defaults and new.get(k) == defaults[k]))
