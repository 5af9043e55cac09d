"""Models, built by name from a registry: ``get_model(name, **kwargs)``.

Every model is a Flax module called as ``model.apply(variables, inputs, train=...)``; its
attributes (``spec`` for quantization, ``num_classes`` or ``vocab_size``, ``dtype``, …) are
the keyword arguments. ``TASKS`` says what each model consumes: "image" (images [B, H, W, C] →
logits [B, classes]) or "lm" (tokens [B, T] → logits [B, T, vocab]). In the training config,
``config.model`` holds ``name`` and the model's own options; ``spec`` comes from
``config.quant`` and ``num_classes`` / ``vocab_size`` from the data.
"""

import dataclasses

import jax.numpy as jnp

from fogzo_jax.models.llama import LLAMA_MODELS, LLAMA_SIZES, Llama
from fogzo_jax.models.mlp import MLP
from fogzo_jax.models.resnet import ResNet, ResNet18, ResNet50
from fogzo_jax.models.vit import DeiTSmall, DeiTTiny, ViT, resolve_patch_size

MODELS = {"mlp": MLP, "resnet18": ResNet18, "resnet50": ResNet50, "deit_tiny": DeiTTiny,
          "deit_small": DeiTSmall, **LLAMA_MODELS}
TASKS = {name: "lm" if name.startswith("llama") else "image" for name in MODELS}
FROM_ELSEWHERE = ("spec", "num_classes", "vocab_size")
"""Model arguments that come from ``config.quant`` (spec) and the data, not ``config.model``."""
DTYPES = ("float32", "bfloat16")

__all__ = ["MODELS", "TASKS", "LLAMA_SIZES", "Llama", "MLP", "ResNet", "ResNet18", "ResNet50",
           "DeiTSmall", "DeiTTiny", "ViT", "check_args", "get_model", "model_fields",
           "resolve_patch_size"]


def model_fields(name: str) -> tuple[str, ...]:
  """The keyword arguments ``get_model(name, ...)`` accepts."""
  return tuple(f.name for f in dataclasses.fields(MODELS[name]) if f.name not in ("parent",
                                                                                 "name"))


def check_args(name: str = "mlp", **options) -> None:
  """Checks ``config.model``: a known ``name`` and only that model's own options."""
  if name not in MODELS:
    raise ValueError(f"name must be one of {', '.join(map(repr, MODELS))}; got {name!r}")
  own = sorted(set(model_fields(name)) - set(FROM_ELSEWHERE))
  for key, value in options.items():
    if key in FROM_ELSEWHERE:
      raise ValueError(f"{key} is not a config.model option: it comes from "
                       f"{'config.quant' if key == 'spec' else 'the data'}")
    if key not in own:
      raise ValueError(f"{key} is not an option of model {name!r}; options: {', '.join(own)}")
    if key in ("dtype", "param_dtype") and value not in DTYPES:
      raise ValueError(f"{key} must be one of {', '.join(map(repr, DTYPES))}; got {value!r}")


def get_model(name: str, **kwargs):
  """The model ``name`` with its keyword arguments (dtype names are resolved)."""
  if name not in MODELS:
    raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}; got {name!r}")
  unknown = sorted(set(kwargs) - set(model_fields(name)))
  if unknown:
    raise ValueError(f"model {name!r} has no option {unknown[0]!r}; options: "
                     f"{', '.join(model_fields(name))}")
  for key in ("dtype", "param_dtype"):
    if isinstance(kwargs.get(key), str):
      kwargs[key] = jnp.dtype(kwargs[key])
  return MODELS[name](**kwargs)
