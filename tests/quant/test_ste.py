import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fogzo_jax import quant

X = jnp.asarray([-2.5, -1.3, -0.99, -0.4, -0.01, 0.0, 0.2, 0.7, 0.98, 1.6, 3.0])


def test_round_ste_forward_and_identity_backward():
  np.testing.assert_array_equal(quant.round_ste(X), jnp.round(X))
  np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(quant.round_ste(x) * X))(X), X)


@pytest.mark.parametrize("kind", ["hardtanh", "tanh", "approxsign"])
def test_sign_ste_backward_equals_surrogate_derivative(kind):
  y = quant.sign_ste(X, backward=kind)
  np.testing.assert_array_equal(y, jnp.where(X >= 0, 1.0, -1.0))  # ±1, sign(0) = +1
  g = jax.grad(lambda x: jnp.sum(quant.sign_ste(x, backward=kind)))(X)
  ref = jax.vmap(jax.grad(quant.SIGN_SURROGATES[kind]))(X)
  np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-6)
  # Upstream cotangents are multiplied, not replaced.
  g2 = jax.grad(lambda x: jnp.sum(3.0 * quant.sign_ste(x, backward=kind)))(X)
  np.testing.assert_allclose(g2, 3 * ref, rtol=1e-6, atol=1e-6)


def test_sign_ste_known_values():
  g = lambda kind: jax.grad(lambda x: quant.sign_ste(x, backward=kind))
  assert g("hardtanh")(0.5) == 1.0 and g("hardtanh")(1.5) == 0.0
  np.testing.assert_allclose(g("tanh")(0.5), 1 - np.tanh(0.5) ** 2, rtol=1e-6)
  np.testing.assert_allclose(g("approxsign")(0.25), 1.5, rtol=1e-6)
  assert g("approxsign")(1.5) == 0.0


def test_sign_ste_unknown_backward():
  with pytest.raises(ValueError, match="backward must be one of 'hardtanh', 'tanh'"):
    quant.sign_ste(X, backward="relu")
