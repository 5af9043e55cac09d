"""QuEST: Gaussian-optimal clipping table, Hadamard rotation, grid, trust-mask backward."""

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy import integrate, stats

from fogzo_jax import quant


def gaussian_mse(c, bits):
  levels = (np.arange(2 ** bits) - 2 ** bits / 2 + 0.5) * 2 * c / (2 ** bits - 1)
  edges = np.concatenate([[-np.inf], (levels[1:] + levels[:-1]) / 2, [np.inf]])
  return sum(integrate.quad(lambda z: (z - l) ** 2 * stats.norm.pdf(z), a, b)[0]
             for l, a, b in zip(levels, edges[:-1], edges[1:]))


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_gaussian_clip_is_the_mse_minimiser(bits):
  c = quant.GAUSSIAN_CLIP[bits]
  best = gaussian_mse(c, bits)
  assert best <= gaussian_mse(c * 0.99, bits) and best <= gaussian_mse(c * 1.01, bits)
  if bits == 1:  # closed form: ±E|z| = ±√(2/π)
    np.testing.assert_allclose(c, np.sqrt(2 / np.pi), rtol=1e-5)


def test_hadamard_is_orthonormal_symmetric_and_rotate_is_its_own_inverse():
  h = quant.hadamard(8)
  np.testing.assert_allclose(h @ h.T, np.eye(8), atol=1e-6)
  np.testing.assert_array_equal(h, h.T)
  x = jax.random.normal(jax.random.key(0), (3, 384))  # 384 = 3 blocks of 128
  np.testing.assert_allclose(quant.rotate(quant.rotate(x)), x, atol=1e-5)
  w = jax.random.normal(jax.random.key(1), (384, 5))
  np.testing.assert_allclose(quant.rotate(x) @ quant.rotate(w, axis=0), x @ w, rtol=1e-4,
                             atol=1e-4)
  with pytest.raises(ValueError, match="power of 2"):
    quant.hadamard(6)


def test_grid_levels_and_trust_mask():
  bits = 2
  x = jax.random.normal(jax.random.key(2), (4, 512)) * 3.0
  q = quant.quest_quantize(x, bits)
  rms = jnp.sqrt(jnp.mean(x ** 2, -1, keepdims=True))
  c = quant.GAUSSIAN_CLIP[bits] * rms
  step = 2 * c / 3
  k = np.asarray(q / step - 0.5)  # integer level index −2 … 1
  np.testing.assert_allclose(k, np.round(k), atol=1e-4)
  assert k.min() >= -2 - 1e-4 and k.max() <= 1 + 1e-4
  assert bool(jnp.all(jnp.abs(q) <= c * (1 + 1e-5)))  # outer levels ±c
  inside = jnp.abs(x) <= c
  assert bool(jnp.all(jnp.where(inside, jnp.abs(q - x) <= step / 2 * (1 + 1e-5), True)))
  g = np.asarray(jax.grad(lambda x: jnp.sum(quant.quest_quantize(x, bits)))(x))
  trusted = np.asarray(jnp.abs(q - x) <= step / 2)
  np.testing.assert_array_equal(g, trusted.astype(np.float32))
  far = np.abs(np.asarray(x)) > np.asarray(c) + np.asarray(step)  # clipped outliers: no gradient
  assert far.any() and not g[far].any()


def test_quest_dense_computes_in_the_rotated_basis():
  spec = quant.QuantSpec(kind="quest", bits=2, activations=True)
  layer = quant.QuantDense(16, spec=spec, use_bias=False)
  x = jax.random.normal(jax.random.key(3), (5, 64))
  v = layer.init(jax.random.key(4), x)
  w = v["params"]["kernel"]
  expected = quant.quest_quantize(quant.rotate(x), 2) @ quant.quest_quantize(
      quant.rotate(w, axis=0), 2, axis=0)
  np.testing.assert_allclose(layer.apply(v, x), expected, rtol=1e-5, atol=1e-5)
  # ε per output column = Δ·ε̄(identity), Δ from the rotated column's RMS.
  eps = quant.epsilon_from_params(v["params"], v["quant"], spec)["kernel"]
  rw = quant.rotate(w, axis=0)
  delta = 2 * quant.GAUSSIAN_CLIP[2] * jnp.sqrt(jnp.mean(rw ** 2, 0, keepdims=True)) / 3
  np.testing.assert_allclose(eps, delta / (2 * np.sqrt(3)), rtol=1e-4)
  assert eps.shape == (1, 16)


def test_a_quest_weight_always_has_a_gradient():
  """The trust mask zeroes the gradient of rotated entries, but each weight's gradient mixes a
  whole Hadamard block, so no weight's STE gradient is exactly 0 (unlike fixed scale and LSQ,
  where a weight outside the range gets none): ``skip_zero_grad`` changes nothing with QuEST."""
  layer = quant.QuantDense(32, spec=quant.QuantSpec(kind="quest", bits=2), use_bias=False)
  x = jax.random.normal(jax.random.key(5), (8, 64))
  v = layer.init(jax.random.key(6), x)
  kernel = v["params"]["kernel"].at[:3].multiply(6.0)  # outliers: rotated entries get clipped
  loss = lambda k: jnp.sum(layer.apply({"params": {"kernel": k}, "quant": v["quant"]}, x) ** 2)
  rotated = quant.rotate(kernel, axis=0)
  masked = jax.grad(lambda r: jnp.sum(quant.quest_quantize(r, 2, axis=0)))(rotated) == 0
  assert 0 < float(jnp.mean(masked)) < 0.5
  assert not bool(jnp.any(jax.grad(loss)(kernel) == 0))
