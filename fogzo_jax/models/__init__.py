"""Models, built by name from a registry: ``get_model(name, **kwargs)``.

Every model is a Flax module called as ``model.apply(variables, inputs, train=...)``; its
attributes (``spec`` for quantization, ``num_classes`` or ``vocab_size``, ``dtype``, …) are
the keyword arguments. ``TASKS`` says what each model consumes: "image" (images [B, H, W, C] →
logits [B, classes]) or "lm" (tokens [B, T] → logits [B, T, vocab]).
"""

import dataclasses

from fogzo_jax.models.llama import LLAMA_MODELS, LLAMA_SIZES, Llama
from fogzo_jax.models.mlp import MLP
from fogzo_jax.models.resnet import ResNet, ResNet18, ResNet50
from fogzo_jax.models.vit import DeiTSmall, DeiTTiny, ViT

MODELS = {"mlp": MLP, "resnet18": ResNet18, "resnet50": ResNet50, "deit_tiny": DeiTTiny,
          "deit_small": DeiTSmall, **LLAMA_MODELS}
TASKS = {name: "lm" if name.startswith("llama") else "image" for name in MODELS}


def model_fields(name: str) -> tuple[str, ...]:
  """The keyword arguments ``get_model(name, ...)`` accepts."""
  return tuple(f.name for f in dataclasses.fields(MODELS[name]) if f.name not in ("parent",
                                                                                 "name"))


def get_model(name: str, **kwargs):
  if name not in MODELS:
    raise ValueError(f"model must be one of {', '.join(map(repr, MODELS))}; got {name!r}")
  unknown = sorted(set(kwargs) - set(model_fields(name)))
  if unknown:
    raise ValueError(f"model {name!r} has no option {unknown[0]!r}; options: "
                     f"{', '.join(model_fields(name))}")
  return MODELS[name](**kwargs)
