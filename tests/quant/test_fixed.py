"""Fixed-scale quantizer: grid, backward of each STE kind, and its link to the smoothing table."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fogzo_jax as fz
from fogzo_jax import quant

ALPHA = 0.3
X = jnp.linspace(-1.4, 1.4, 57)  # covers both clipping regions of 2 bits (levels −2…1)·0.3


def surrogate_staircase(y, lo, hi, ste):
  """lo + Σ_k ½(S(y − t_k) + 1) over all thresholds t_k = lo + ½ … hi − ½ (no truncation)."""
  t = jnp.arange(lo, hi) + 0.5
  return lo + jnp.sum(0.5 * (quant.SIGN_SURROGATES[ste](y - t) + 1))


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_forward_on_grid(bits):
  lo, hi = quant.levels(bits)
  x = jnp.linspace(-5.013, 5.007, 401)  # no exact rounding ties
  q = quant.quantize(x, bits, ALPHA)
  k = np.asarray(q) / ALPHA
  np.testing.assert_allclose(k, np.round(k), atol=1e-5)
  assert k.min() >= lo - 1e-5 and k.max() <= hi + 1e-5
  np.testing.assert_allclose(q, ALPHA * np.clip(np.round(np.asarray(x) / ALPHA), lo, hi),
                             atol=1e-6)


def test_identity_backward_is_one_inside_range():
  g = jax.grad(lambda x: jnp.sum(quant.quantize(x, 2, ALPHA, "identity")))(X)
  y = np.asarray(X) / ALPHA
  np.testing.assert_array_equal(g, ((y >= -2) & (y <= 1)).astype(np.float32))


@pytest.mark.parametrize("ste", ["hardtanh", "tanh", "approxsign"])
@pytest.mark.parametrize("bits", [2, 4])
def test_sign_backward_is_derivative_of_staircase_surrogate(ste, bits):
  lo, hi = quant.levels(bits)
  x = jnp.linspace(-3 * 2 ** bits * ALPHA / 2, 3 * 2 ** bits * ALPHA / 2, 101)
  g = jax.grad(lambda x: jnp.sum(quant.quantize(x, bits, ALPHA, ste)))(x)
  ref = jax.vmap(jax.grad(lambda xi: ALPHA * surrogate_staircase(xi / ALPHA, lo, hi, ste)))(x)
  np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ste", ["identity", "hardtanh", "tanh", "approxsign"])
def test_epsilon_smoothing_is_what_the_ste_differentiates(ste):
  """E_u[Q(x + α ε̄ u)] has derivative equal to the STE backward: checked through the values,
  E_u[Q(x + α ε̄ u)] − E_u[Q(x0 + α ε̄ u)] = ∫ STE'(t) dt (trapezoid on a fine grid)."""
  bits, n = 2, 400_000
  eps = quant.quantizer_epsilon(ALPHA, ste)
  _, noise = fz.implicit_smoothing(ste)
  u = fz.get_noise(noise)(jax.random.key(0), (n,), jnp.float32)
  smooth = lambda x: float(jnp.mean(quant.quantize(x + eps * u, bits, ALPHA, ste)))
  grad = jax.vmap(jax.grad(lambda x: quant.quantize(x, bits, ALPHA, ste)))
  x0 = -1.5
  for x1 in (-0.7, -0.2, 0.1, 0.5, 1.5):
    t = jnp.linspace(x0, x1, 4001)
    integral = float(jnp.trapezoid(grad(t), t))
    # |Q| ≤ 2α, so each MC mean has s.e. ≤ 2α/√n; the difference of two: 2√2 α/√n.
    assert abs(smooth(x1) - smooth(x0) - integral) <= 5 * 2 * math.sqrt(2) * ALPHA / math.sqrt(n) + 1e-3


def test_quantizer_epsilon():
  for ste, (eps_bar, _) in fz.SMOOTHING_TABLE.items():
    np.testing.assert_allclose(quant.quantizer_epsilon(0.25, ste), 0.25 * eps_bar)
  per_channel = quant.quantizer_epsilon(jnp.array([0.1, 0.2]), "tanh")
  np.testing.assert_allclose(per_channel, jnp.array([0.1, 0.2]) * math.pi / math.sqrt(12),
                             rtol=1e-6)


def test_per_channel_scale_and_bf16():
  scale = jnp.array([0.1, 0.5])
  x = jnp.array([[0.26, 0.26], [-0.4, 1.0]], jnp.bfloat16)
  q = quant.quantize(x, 2, scale.astype(jnp.bfloat16))
  assert q.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(q, np.float32), [[0.1, 0.5], [-0.2, 0.5]], atol=1e-2)


def test_bad_arguments():
  with pytest.raises(ValueError, match="ste must be one of 'identity', 'hardtanh', 'tanh', "
                                       "'approxsign'"):
    quant.quantize(X, 2, ALPHA, ste="relu")
  with pytest.raises(ValueError, match="bits"):
    quant.quantize(X, 0, ALPHA)
