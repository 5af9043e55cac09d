"""Quantizers with straight-through estimators (STEs), and quantized Flax layers."""

from fogzo_jax.quant.fixed import levels, quantize, quantizer_epsilon, staircase_derivative
from fogzo_jax.quant.layers import (NO_QUANT, QUANT_KINDS, QuantConv, QuantDense, QuantSpec,
                                    epsilon_from_params, quantized_mask, weight_step_sizes)
from fogzo_jax.quant.lsq import grad_scale, lsq_init_step, lsq_levels, lsq_quantize
from fogzo_jax.quant.quest import (GAUSSIAN_CLIP, hadamard, quest_quantize, quest_step,
                                   quest_weight_step, rotate)
from fogzo_jax.quant.ste import (SIGN_DERIVATIVES, SIGN_SURROGATES, STE_KINDS, round_ste,
                                 sign_ste)
