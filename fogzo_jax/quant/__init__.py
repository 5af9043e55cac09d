"""Quantizers with straight-through estimators (STEs), and quantized Flax layers."""

from fogzo_jax.quant.fixed import levels, quantize, quantizer_epsilon, staircase_derivative
from fogzo_jax.quant.ste import (SIGN_DERIVATIVES, SIGN_SURROGATES, STE_KINDS, round_ste,
                                 sign_ste)
from fogzo_jax.quant.layers import QuantDense, lsq_init_scale, quant_epsilon
