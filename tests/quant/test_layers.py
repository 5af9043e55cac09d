import math

import jax
import jax.numpy as jnp
import numpy as np

import fogzo_jax as fz
from fogzo_jax import quant


def test_quant_dense_scale_is_lsq_init_and_fixed():
  layer = quant.QuantDense(4, bits=3, ste="tanh")
  x = jnp.ones((2, 6))
  v = layer.init(jax.random.key(0), x)
  k = v["params"]["kernel"]
  np.testing.assert_allclose(v["quant"]["kernel"], 2 * jnp.mean(jnp.abs(k)) / math.sqrt(3),
                             rtol=1e-6)
  np.testing.assert_allclose(v["quant"]["bias"], v["quant"]["kernel"])
  # The scale takes no gradient (fixed α); the kernel gets the tanh-STE gradient.
  g = jax.grad(lambda v: jnp.sum(layer.apply(v, x)), allow_int=True)(v)
  assert float(jnp.abs(g["quant"]["kernel"])) == 0.0
  assert float(jnp.abs(g["params"]["kernel"]).sum()) > 0


def test_quant_epsilon_tree():
  scales = {"a": {"kernel": jnp.float32(0.2), "bias": jnp.float32(0.2)}}
  eps = quant.quant_epsilon(scales, "hardtanh")
  np.testing.assert_allclose(eps["a"]["kernel"], 0.2 / math.sqrt(3), rtol=1e-6)
  assert jax.tree.structure(eps) == jax.tree.structure(scales)
