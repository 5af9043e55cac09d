"""Straight-through estimators written with ``jax.custom_vjp``.

An STE uses a piecewise-constant function in the forward pass and the derivative of a smooth
surrogate in the backward pass. The kinds of the paper's table:

| kind       | forward | backward h(x) = d surrogate / dx          |
|------------|---------|-------------------------------------------|
| identity   | round   | 1                                         |
| hardtanh   | sign    | 1{|x| ≤ 1}                                |
| tanh       | sign    | 1 − tanh²(x)                              |
| approxsign | sign    | max(0, 2 − 2|x|)  (Bi-Real Net's ApproxSign) |

``sign`` here maps 0 to +1, so a binary quantizer's output is always ±1.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

SIGN_SURROGATES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "hardtanh": lambda x: jnp.clip(x, -1.0, 1.0),
    "tanh": jnp.tanh,
    "approxsign": lambda x: jnp.where(jnp.abs(x) <= 1, 2 * x - x * jnp.abs(x), jnp.sign(x)),
}
"""Smooth surrogates S of sign(x) whose derivative the STE backward uses."""

SIGN_DERIVATIVES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "hardtanh": lambda x: (jnp.abs(x) <= 1).astype(x.dtype),
    "tanh": lambda x: 1 - jnp.tanh(x) ** 2,
    "approxsign": lambda x: jnp.maximum(0, 2 - 2 * jnp.abs(x)),
}
"""h(x) = S'(x), written in closed form (cheaper than autodiff of the surrogate)."""

STE_KINDS = ("identity",) + tuple(SIGN_DERIVATIVES)


def check_ste(ste: str) -> str:
  if ste not in STE_KINDS:
    raise ValueError(f"ste must be one of {', '.join(map(repr, STE_KINDS))}; got {ste!r}")
  return ste


@jax.custom_vjp
def round_ste(x: jax.Array) -> jax.Array:
  """round(x) forward (half to even), identity backward.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.array([0.4, 1.6])
    >>> round_ste(x), jax.grad(lambda x: round_ste(x).sum())(x)
    (Array([0., 2.], dtype=float32), Array([1., 1.], dtype=float32))
  """
  return jnp.round(x)


round_ste.defvjp(lambda x: (jnp.round(x), None), lambda _, g: (g,))


def _sign(x):
  return jnp.where(x >= 0, 1, -1).astype(x.dtype)


def _make_sign_ste(kind: str):
  deriv = SIGN_DERIVATIVES[kind]

  @jax.custom_vjp
  def f(x):
    return _sign(x)

  f.defvjp(lambda x: (_sign(x), x), lambda x, g: (g * deriv(x).astype(g.dtype),))
  return f


_SIGN_STES = {kind: _make_sign_ste(kind) for kind in SIGN_DERIVATIVES}


def sign_ste(x: jax.Array, backward: str = "hardtanh") -> jax.Array:
  """sign(x) ∈ {−1, +1} forward; backward h(x) of the chosen surrogate (see module table).

  Args:
    x: any shape.
    backward: "hardtanh", "tanh" or "approxsign".

  Example:
    >>> import jax, jax.numpy as jnp
    >>> x = jnp.array([-0.5, 2.0])
    >>> sign_ste(x), jax.grad(lambda x: sign_ste(x, "hardtanh").sum())(x)
    (Array([-1.,  1.], dtype=float32), Array([1., 0.], dtype=float32))
  """
  if backward not in _SIGN_STES:
    raise ValueError(f"backward must be one of {', '.join(map(repr, _SIGN_STES))}; "
                     f"got {backward!r}")
  return _SIGN_STES[backward](x)
