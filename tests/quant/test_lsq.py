"""LSQ forward values and gradients against the formulas of Esser et al. (2020)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fogzo_jax import quant


@pytest.mark.parametrize("bits, signed", [(2, True), (3, True), (2, False), (4, False)])
def test_forward_and_gradients_match_lsq_formulas(bits, signed):
  x = jax.random.normal(jax.random.key(0), (1000,)) * 1.5 + (0.0 if signed else 1.0)
  s = jnp.float32(0.37)
  q_n, q_p = quant.lsq_levels(bits, signed)
  v = np.asarray(x) / 0.37
  expected = np.clip(np.round(v), -q_n, q_p) * 0.37
  np.testing.assert_allclose(quant.lsq_quantize(x, s, bits, signed), expected, rtol=1e-6,
                             atol=1e-7)
  # ∂x̂/∂x = 1 inside [−Q_N, Q_P], 0 outside.
  gx = jax.grad(lambda x: jnp.sum(quant.lsq_quantize(x, s, bits, signed)))(x)
  inside = (v >= -q_n) & (v <= q_p)
  np.testing.assert_array_equal(np.asarray(gx), inside.astype(np.float32))
  # ∂x̂/∂s summed over elements: Σ (round(v) − v | −Q_N | Q_P) · g, g = 1/√(N·Q_P).
  gs = jax.grad(lambda s: jnp.sum(quant.lsq_quantize(x, s, bits, signed)))(s)
  per = np.where(v < -q_n, -q_n, np.where(v > q_p, q_p, np.round(v) - v))
  np.testing.assert_allclose(gs, per.sum() / math.sqrt(x.size * q_p), rtol=1e-4, atol=1e-5)


def test_init_step_and_levels():
  w = jnp.array([-1.0, 0.5, 0.25, -0.25])
  np.testing.assert_allclose(quant.lsq_init_step(w, 2), 2 * 0.5 / 1.0)
  np.testing.assert_allclose(quant.lsq_init_step(w, 3), 2 * 0.5 / math.sqrt(3), rtol=1e-6)
  assert float(quant.lsq_init_step(jnp.zeros(3), 2)) == 1.0  # no zero step from a zero batch
  assert quant.lsq_levels(2) == (2, 1) and quant.lsq_levels(2, signed=False) == (0, 3)
  with pytest.raises(ValueError, match="bits must be an integer"):
    quant.lsq_levels(0)


def test_grad_scale_keeps_value_scales_gradient():
  f = lambda s: quant.grad_scale(s, 0.1) ** 2
  assert float(f(3.0)) == 9.0
  np.testing.assert_allclose(jax.grad(f)(3.0), 0.6, rtol=1e-6)
