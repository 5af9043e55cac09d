"""Fixed-scale symmetric uniform quantizer with any STE kind of the paper.

Q(x) = α · clip(round(x/α), lo, hi), lo = −2^(b−1), hi = 2^(b−1) − 1 (b bits, step α).

Backward, with y = x/α and the integer grid written as a staircase of unit steps at the
thresholds t_k = lo + k + ½ (k = 0 … 2^b − 2), round(y) clipped = lo + Σ_k step(y − t_k):

- ``identity``: dQ/dx = 1{lo ≤ y ≤ hi}, i.e. round(clip(y)) with round → identity (the LSQ
  convention; 1{lo − ½ ≤ y ≤ hi + ½} would not match the smoothing at the ends);
- sign kinds (each step is (sign + 1)/2): dQ/dx = Σ_k ½·h(y − t_k), with h the surrogate
  derivative of ``ste.SIGN_DERIVATIVES``.

Either way the backward is the exact derivative of E_u[Q(x + α·ε̄·u)] for the (ε̄, p(u)) of the
implicit-smoothing table, which is why FOGZO perturbs this tensor with ε = α·ε̄
(``quantizer_epsilon``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fogzo_jax import perturbations
from fogzo_jax.quant import ste as ste_lib

# How many thresholds on each side of y enter the backward sum (beyond them h is 0, or for
# tanh below sech²(8.5) ≈ 2e-7 relative).
_REACH = {"hardtanh": 1, "approxsign": 1, "tanh": 8}


def levels(bits: int, signed: bool = True) -> tuple[int, int]:
  """(lo, hi) integer levels of a b-bit quantizer: signed −2^(b−1) … 2^(b−1)−1, else 0 … 2^b−1."""
  if isinstance(bits, bool) or int(bits) != bits or bits < 1:
    raise ValueError(f"bits must be an integer ≥ 1; got {bits!r}")
  if not signed:
    return 0, 2 ** bits - 1
  return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def staircase_derivative(y: jax.Array, lo: int, hi: int, ste: str) -> jax.Array:
  """d/dy of the surrogate staircase lo + Σ_k step(y − t_k) (see module docstring)."""
  if ste == "identity":
    return ((y >= lo) & (y <= hi)).astype(y.dtype)
  h = ste_lib.SIGN_DERIVATIVES[ste]
  reach = _REACH[ste]
  nearest = jnp.floor(y) + 0.5  # the threshold just above-or-at y's integer part
  total = jnp.zeros_like(y)
  for offset in range(-reach, reach + 1):  # static, ≤ 17 terms
    t = nearest + offset
    inside = (t > lo) & (t < hi)
    total = total + jnp.where(inside, 0.5 * h(y - t), 0)
  return total


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _quantize_unit(y, lo, hi, ste):
  return jnp.clip(jnp.round(y), lo, hi)


def _fwd(y, lo, hi, ste):
  return _quantize_unit(y, lo, hi, ste), y


def _bwd(lo, hi, ste, y, g):
  return (g * staircase_derivative(y, lo, hi, ste).astype(g.dtype),)


_quantize_unit.defvjp(_fwd, _bwd)


def quantize(x: jax.Array, bits: int, scale, ste: str = "identity",
             signed: bool = True) -> jax.Array:
  """b-bit symmetric uniform quantization with step ``scale``.

  Args:
    x: any shape.
    bits: b ≥ 1; levels −2^(b−1) … 2^(b−1) − 1 (for b = 1: {−1, 0}·α; use ``sign_ste`` for ±α).
    scale: α > 0, a scalar or an array broadcastable to ``x`` (per-channel). Gradients flow
      to it as through any array (pass ``jax.lax.stop_gradient(scale)`` to fix it).
    ste: "identity" | "hardtanh" | "tanh" | "approxsign": the backward (module docstring).
    signed: signed levels (default) or unsigned 0 … 2^b − 1 (post-ReLU activations).

  Returns:
    Array of ``x``'s shape whose values lie exactly on the grid α·{lo, …, hi}.

  Example:
    >>> import jax.numpy as jnp
    >>> quantize(jnp.array([-0.9, 0.1, 0.3, 2.0]), bits=2, scale=0.5)   # levels {−2, …, 1}·α
    Array([-1. ,  0. ,  0.5,  0.5], dtype=float32)
  """
  ste_lib.check_ste(ste)
  lo, hi = levels(bits, signed)
  return scale * _quantize_unit(x / scale, lo, hi, ste)


def quantizer_epsilon(scale, ste: str):
  """ε = α·ε̄(ste): the FOGZO perturbation radius for a tensor quantized with step α.

  Example:
    >>> round(float(quantizer_epsilon(0.5, "identity")), 4)   # 0.5 / (2√3)
    0.1443
  """
  return scale * perturbations.implicit_smoothing(ste).eps_bar
