"""Noise laws for the random part of the perturbation, and the implicit-smoothing table.

FOGZO (Yang & Aamodt, 2025, Sec. 3) perturbs with v = √β·s·ĝ + √(1−β)·u, where every element
of u is drawn i.i.d. from a zero-mean, unit-variance law p(u). The paper picks p(u) and the
perturbation radius ε = α·ε̄ so that the zeroth-order estimate differentiates the same smoothed
loss that the STE implicitly differentiates:

| STE (forward → backward) | ε̄        | p(u)                                  |
|--------------------------|----------|---------------------------------------|
| round → identity         | 1/(2√3)  | uniform on [−√3, √3]                  |
| sign → hardtanh          | 1/√3     | uniform on [−√3, √3]                  |
| sign → tanh              | π/√12    | logistic (sech² density), unit var    |
| sign → ApproxSign        | 1/√6     | triangular on [−√6, √6]               |

Why: the STE's surrogate derivative, normalised, is the density of ε̄·u (e.g. hardtanh's
1{|x|≤1}/2 is the density of U(−1, 1) = (1/√3)·U(−√3, √3)), so E_u[Q(x + ε̄u)] is the function
whose exact derivative the STE uses.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp

NoiseFn = Callable[[jax.Array, tuple, jnp.dtype], jax.Array]
"""A noise law: ``(key, shape, dtype) -> array`` of i.i.d. zero-mean, unit-variance samples."""

_SQRT3 = math.sqrt(3.0)
_SQRT6 = math.sqrt(6.0)


def uniform(key: jax.Array, shape: tuple, dtype=jnp.float32) -> jax.Array:
  """Uniform on [−√3, √3] (variance 1)."""
  return jax.random.uniform(key, shape, dtype, minval=-_SQRT3, maxval=_SQRT3)


def gaussian(key: jax.Array, shape: tuple, dtype=jnp.float32) -> jax.Array:
  """Standard normal."""
  return jax.random.normal(key, shape, dtype)


def rademacher(key: jax.Array, shape: tuple, dtype=jnp.float32) -> jax.Array:
  """±1 with probability ½ each."""
  return jax.random.rademacher(key, shape, dtype)


def logistic(key: jax.Array, shape: tuple, dtype=jnp.float32) -> jax.Array:
  """Logistic with scale √3/π (variance 1); density ∝ sech²(π·u/(2√3))."""
  return jax.random.logistic(key, shape, dtype) * jnp.asarray(_SQRT3 / math.pi, dtype)


def triangular(key: jax.Array, shape: tuple, dtype=jnp.float32) -> jax.Array:
  """Symmetric triangular on [−√6, √6] (variance 1), as the sum of two U(−√6/2, √6/2)."""
  half = _SQRT6 / 2
  k1, k2 = jax.random.split(key)
  return (jax.random.uniform(k1, shape, dtype, -half, half)
          + jax.random.uniform(k2, shape, dtype, -half, half))


NOISE_LAWS: dict[str, NoiseFn] = {
    "uniform": uniform,
    "gaussian": gaussian,
    "rademacher": rademacher,
    "logistic": logistic,
    "triangular": triangular,
}
"""Registry of the named noise laws, all zero mean and unit variance."""


class Smoothing(NamedTuple):
  """The implicit smoothing of one STE kind: ε̄ (in units of the quantizer step) and p(u)."""
  eps_bar: float
  noise: str


SMOOTHING_TABLE: dict[str, Smoothing] = {
    "identity": Smoothing(1.0 / (2.0 * _SQRT3), "uniform"),
    "hardtanh": Smoothing(1.0 / _SQRT3, "uniform"),
    "tanh": Smoothing(math.pi / math.sqrt(12.0), "logistic"),
    "approxsign": Smoothing(1.0 / _SQRT6, "triangular"),
}
"""The paper's table: STE kind → (ε̄, name of the noise law)."""


def _allowed(names) -> str:
  return ", ".join(repr(n) for n in names)


def implicit_smoothing(ste: str) -> Smoothing:
  """Returns ``(eps_bar, noise)`` for an STE kind, per the paper's implicit-smoothing table.

  Args:
    ste: one of "identity", "hardtanh", "tanh", "approxsign".

  Returns:
    ``Smoothing(eps_bar, noise)``; use ε = α·eps_bar for a tensor quantized with step α, and
    ``noise`` as the estimator's noise law.

  Example:
    >>> eps_bar, noise = implicit_smoothing("tanh")
    >>> round(eps_bar, 4), noise
    (0.9069, 'logistic')
  """
  if ste not in SMOOTHING_TABLE:
    raise ValueError(f"ste must be one of {_allowed(SMOOTHING_TABLE)}; got {ste!r}")
  return SMOOTHING_TABLE[ste]


def get_noise(noise: Union[str, NoiseFn]) -> NoiseFn:
  """Resolves a noise law given by name or as a callable ``(key, shape, dtype) -> array``."""
  if callable(noise):
    return noise
  if noise not in NOISE_LAWS:
    raise ValueError(
        f"noise must be one of {_allowed(NOISE_LAWS)} or a callable (key, shape, dtype) -> "
        f"array; got {noise!r}")
  return NOISE_LAWS[noise]
