"""LSQ: learned step size quantization (Esser et al., ICLR 2020).

  x̂ = round(clip(x/s, −Q_N, Q_P)) · s

with signed levels Q_N = 2^(b−1), Q_P = 2^(b−1) − 1 (weights, activations that may be negative)
or unsigned Q_N = 0, Q_P = 2^b − 1 (activations after a ReLU). The backward is LSQ's:

  ∂x̂/∂x = 1{−Q_N ≤ x/s ≤ Q_P}
  ∂x̂/∂s = (round(x/s) − x/s) inside, −Q_N below, Q_P above,  times g = 1/√(N·Q_P)

(N: elements per step size: the weight count, or the features per example for activations).
Written as the paper's own recipe — a gradient-scale function on s and a round with identity
backward — so autodiff produces exactly these formulas (tests/quant/test_lsq.py checks them).
Initial step: s₀ = 2·mean|x| / √Q_P.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fogzo_jax.quant.ste import round_ste


def lsq_levels(bits: int, signed: bool = True) -> tuple[int, int]:
  """(Q_N, Q_P): the grid is −Q_N … Q_P (b bits)."""
  if int(bits) != bits or bits < 1:
    raise ValueError(f"bits must be an integer ≥ 1; got {bits!r}")
  if signed:
    return 2 ** (bits - 1), 2 ** (bits - 1) - 1
  return 0, 2 ** bits - 1


def grad_scale(x: jax.Array, scale) -> jax.Array:
  """Value x, gradient multiplied by ``scale`` (LSQ's gradscale)."""
  return jax.lax.stop_gradient(x - x * scale) + x * scale


def lsq_init_step(x: jax.Array, bits: int, signed: bool = True,
                  per_channel: bool = False) -> jax.Array:
  """s₀ = 2·mean|x| / √Q_P (LSQ's initialisation); 1.0 where x is all zeros.

  ``per_channel``: one step per index of the last axis (output channel), mean over the others;
  shape [1, …, 1, C]. Otherwise a scalar.
  """
  q_p = max(1, lsq_levels(bits, signed)[1])
  axes = tuple(range(x.ndim - 1)) if per_channel else None
  s = 2 * jnp.mean(jnp.abs(x), axis=axes, keepdims=per_channel) / math.sqrt(q_p)
  return jnp.where(s > 0, s, 1.0)


def lsq_quantize(x: jax.Array, step: jax.Array, bits: int, signed: bool = True,
                 num_elements: int | None = None) -> jax.Array:
  """LSQ fake quantization of ``x`` (any shape) with learned step ``step`` (broadcastable).

  Args:
    x: tensor to quantize.
    step: s > 0 (the caller keeps it positive; |s| is used).
    bits: b.
    signed: signed (weights) or unsigned (post-ReLU activations) levels.
    num_elements: N in g = 1/√(N·Q_P); default: the elements of ``x`` per step value.
  """
  q_n, q_p = lsq_levels(bits, signed)
  if num_elements is None:
    num_elements = x.size // max(1, jnp.size(step))
  s = grad_scale(jnp.abs(step), 1.0 / math.sqrt(num_elements * max(1, q_p)))
  return round_ste(jnp.clip(x / s, -q_n, q_p)) * s
