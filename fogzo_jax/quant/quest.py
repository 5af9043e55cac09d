"""QuEST (Panferov et al., 2025): Hadamard rotation, Gaussian-optimal RMS clipping, trust mask.

For a tensor already rotated by a (block) Hadamard transform H, row-wise (per output channel
for weights, per token for activations), with b bits and L = 2^b levels:

  σ  = RMS(x) over the reduced axis (no gradient, as in QuEST)
  c  = c_b · σ                 c_b: MSE-optimal clip of N(0, 1) (``GAUSSIAN_CLIP``)
  Δ  = 2c / (L − 1)            step of a centred grid with levels (k + ½)·Δ, k = −L/2 … L/2 − 1
  x̂  = (clip(round(x/Δ − ½), −L/2, L/2 − 1) + ½) · Δ

Backward (trust estimator): ∂x̂/∂x = 1{|x̂ − x| ≤ T·Δ/2}; with the default trust T = 1 the
gradient flows wherever the point is within half a step of its level, i.e. |x| ≤ c.
The Hadamard rotation spreads outliers so that rotated values are close to Gaussian, which is
what makes the fixed c_b a good clip. A linear layer uses y = (xH)(HᵀW) = xW with both factors
quantized in the rotated basis (``rotate``; H is symmetric and orthonormal).

For FOGZO, a QuEST weight column behaves like an identity-STE quantizer of step Δ: perturb it
with ε = Δ·ε̄(identity) (``quest_step``, recomputed from the weights at every update).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

GAUSSIAN_CLIP = {1: 0.797885, 2: 1.493530, 3: 2.051068, 4: 2.514005, 5: 2.916151,
                 6: 3.277985, 7: 3.611097, 8: 3.922204}
"""c_b = argmin_c E[(z − Q_c(z))²], z ~ N(0, 1), for the centred 2^b-level grid with outer levels
±c (computed numerically; tests/quant/test_quest.py re-derives them with scipy)."""

MAX_BLOCK = 128


def hadamard(n: int) -> np.ndarray:
  """Orthonormal Sylvester Hadamard matrix [n, n] (n a power of 2); symmetric, H·H = I."""
  if n < 1 or n & (n - 1):
    raise ValueError(f"Hadamard size must be a power of 2; got {n}")
  h = np.ones((1, 1), np.float32)
  while h.shape[0] < n:
    h = np.block([[h, h], [h, -h]])
  return h / np.sqrt(n)


def block_size(dim: int, max_block: int = MAX_BLOCK) -> int:
  """Largest power of two ≤ max_block dividing ``dim`` (the block-diagonal Hadamard's block)."""
  b = 1
  while b * 2 <= max_block and dim % (b * 2) == 0:
    b *= 2
  return b


def rotate(x: jax.Array, axis: int = -1, max_block: int = MAX_BLOCK) -> jax.Array:
  """Applies the block-diagonal Hadamard along ``axis`` (its own inverse)."""
  axis = axis % x.ndim
  dim = x.shape[axis]
  blk = block_size(dim, max_block)
  h = jnp.asarray(hadamard(blk), x.dtype)
  x = jnp.moveaxis(x, axis, -1)
  y = (x.reshape(*x.shape[:-1], dim // blk, blk) @ h).reshape(x.shape)
  return jnp.moveaxis(y, -1, axis)


def _check_bits(bits):
  if bits not in GAUSSIAN_CLIP:
    raise ValueError(f"QuEST bits must be one of {sorted(GAUSSIAN_CLIP)}; got {bits!r}")


def quest_step(x: jax.Array, bits: int, axis: int = -1) -> jax.Array:
  """Δ = 2·c_b·RMS(x)/(2^b − 1) along ``axis`` (kept, size 1); no gradient."""
  _check_bits(bits)
  rms = jnp.sqrt(jnp.mean(jnp.square(x.astype(jnp.float32)), axis=axis, keepdims=True))
  return jax.lax.stop_gradient(2 * GAUSSIAN_CLIP[bits] * rms / (2 ** bits - 1) + 1e-8)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _quest_grid(x, step, bits, trust):
  half = 2 ** (bits - 1)
  return (jnp.clip(jnp.round(x / step - 0.5), -half, half - 1) + 0.5) * step


def _fwd(x, step, bits, trust):
  q = _quest_grid(x, step, bits, trust)
  return q, (jnp.abs(q - x) <= trust * step / 2, step)


def _bwd(bits, trust, res, g):
  mask, step = res
  return g * mask.astype(g.dtype), jnp.zeros_like(step)


_quest_grid.defvjp(_fwd, _bwd)


def quest_quantize(x: jax.Array, bits: int, axis: int = -1, trust: float = 1.0) -> jax.Array:
  """QuEST fake quantization of an already-rotated ``x`` with row-wise RMS along ``axis``."""
  step = quest_step(x, bits, axis).astype(x.dtype)
  return _quest_grid(x, step, bits, float(trust))


def quest_weight_step(kernel: jax.Array, bits: int) -> jax.Array:
  """Δ per output column of a kernel [..., in, out] as QuEST quantizes it (rotated along in)."""
  return quest_step(rotate(kernel, axis=-2), bits, axis=-2)

