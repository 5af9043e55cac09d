"""Noise laws (zero mean, unit variance, support, whole distribution) and the smoothing table.

Tolerances: Z = 5 standard errors. For N samples, the sample mean has s.e. √(1/N); the sample
variance √((κ−1)/N) with κ = E[u⁴]; an empirical CDF at x has s.e. √(F(1−F)/N).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import fogzo_jax as fz
from fogzo_jax import perturbations

Z = 5.0
N = 200_000
S3, S6 = math.sqrt(3), math.sqrt(6)
CDF = {
    "uniform": stats.uniform(-S3, 2 * S3).cdf,
    "gaussian": stats.norm().cdf,
    "rademacher": lambda x: np.where(x < -1, 0.0, np.where(x < 1, 0.5, 1.0)),
    "logistic": stats.logistic(scale=S3 / math.pi).cdf,
    "triangular": stats.triang(c=0.5, loc=-S6, scale=2 * S6).cdf,
}
SUPPORT = {"uniform": S3, "triangular": S6, "rademacher": 1.0}
KURTOSIS = {"uniform": 9 / 5, "gaussian": 3.0, "rademacher": 1.0, "logistic": 4.2,
            "triangular": 2.4}


@pytest.mark.parametrize("name", sorted(perturbations.NOISE_LAWS))
def test_noise_law_moments_support_and_cdf(name):
  u = np.asarray(fz.get_noise(name)(jax.random.key(0), (N,), jnp.float32), np.float64)
  assert abs(u.mean()) <= Z / math.sqrt(N)
  assert abs(np.mean(u ** 2) - 1) <= Z * math.sqrt((KURTOSIS[name] - 1) / N) + 1e-9
  if name in SUPPORT:
    assert np.abs(u).max() <= SUPPORT[name] + 1e-6
  if name == "rademacher":
    assert set(np.unique(u)) == {-1.0, 1.0}
  for x in (-2.0, -0.7, -0.1, 0.4, 1.3):
    f = float(CDF[name](x))
    assert abs(np.mean(u <= x) - f) <= Z * math.sqrt(f * (1 - f) / N) + 1e-9, x


def test_noise_dtype_and_shape():
  for name, law in perturbations.NOISE_LAWS.items():
    x = law(jax.random.key(1), (3, 4), jnp.bfloat16)
    assert x.shape == (3, 4) and x.dtype == jnp.bfloat16, name


def test_smoothing_table_values():
  assert fz.implicit_smoothing("identity") == (1 / (2 * S3), "uniform")
  assert fz.implicit_smoothing("hardtanh") == (1 / S3, "uniform")
  assert fz.implicit_smoothing("tanh") == (math.pi / math.sqrt(12), "logistic")
  assert fz.implicit_smoothing("approxsign") == (1 / S6, "triangular")


@pytest.mark.parametrize("ste", ["hardtanh", "tanh", "approxsign"])
def test_smoothing_matches_sign_surrogate(ste):
  """E_u[sign(x + ε̄u)] is exactly the surrogate S(x) whose derivative the STE uses."""
  eps_bar, noise = fz.implicit_smoothing(ste)
  u = fz.get_noise(noise)(jax.random.key(2), (N,), jnp.float32)
  surrogate = fz.quant.SIGN_SURROGATES[ste]
  for x in (-1.2, -0.5, -0.1, 0.0, 0.3, 0.8, 1.5):
    mc = float(jnp.mean(jnp.where(x + eps_bar * u >= 0, 1.0, -1.0)))
    assert abs(mc - float(surrogate(jnp.float32(x)))) <= Z / math.sqrt(N), x


def test_smoothing_matches_identity_round():
  """E_u[round(x + ε̄u)] = x for the identity STE (ε̄u is uniform on ±½)."""
  eps_bar, noise = fz.implicit_smoothing("identity")
  u = fz.get_noise(noise)(jax.random.key(3), (N,), jnp.float32)
  for x in (-1.3, -0.2, 0.0, 0.45, 2.7):
    mc = float(jnp.mean(jnp.round(x + eps_bar * u)))
    assert abs(mc - x) <= Z * 0.5 / math.sqrt(N), x


def test_unknown_names_raise():
  with pytest.raises(ValueError, match="ste must be one of 'identity', 'hardtanh'"):
    fz.implicit_smoothing("relu")
  with pytest.raises(ValueError, match="noise must be one of"):
    fz.get_noise("cauchy")
