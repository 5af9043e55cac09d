"""Quantizers with straight-through estimators (STEs), and quantized Flax layers.

The quantizers (``round_ste``, ``sign_ste``, ``quantize``, LSQ, QuEST) need only jax; the Flax
layers and the ε/mask helpers of ``fogzo_jax.quant.layers`` (``QuantDense``, ``QuantConv``,
``QuantSpec``, …) load on first use, so ``import fogzo_jax`` does not import Flax.
"""

import importlib

from fogzo_jax.quant.fixed import levels, quantize, quantizer_epsilon, staircase_derivative
from fogzo_jax.quant.lsq import grad_scale, lsq_init_step, lsq_levels, lsq_quantize
from fogzo_jax.quant.quest import (GAUSSIAN_CLIP, hadamard, quest_quantize, quest_step,
                                   quest_weight_step, rotate)
from fogzo_jax.quant.ste import (SIGN_DERIVATIVES, SIGN_SURROGATES, STE_KINDS, round_ste,
                                 sign_ste)

_LAYERS = ("NO_QUANT", "QUANT_KINDS", "QuantConv", "QuantDense", "QuantSpec",
           "epsilon_from_params", "quantized_mask", "weight_step_sizes")

__all__ = ["GAUSSIAN_CLIP", "SIGN_DERIVATIVES", "SIGN_SURROGATES", "STE_KINDS", "grad_scale",
           "hadamard", "levels", "lsq_init_step", "lsq_levels", "lsq_quantize", "quantize",
           "quantizer_epsilon", "quest_quantize", "quest_step", "quest_weight_step", "rotate",
           "round_ste", "sign_ste", "staircase_derivative", *_LAYERS]


def __getattr__(name):
  if name in _LAYERS:
    return getattr(importlib.import_module("fogzo_jax.quant.layers"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LAYERS))
