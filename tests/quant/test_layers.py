import math

import jax
import jax.numpy as jnp
import numpy as np

import fogzo_jax as fz
from fogzo_jax import quant


def test_quant_dense_scale_is_lsq_init_and_fixed():
  layer = quant.QuantDense(4, spec=quant.QuantSpec(kind="fixed", bits=3, ste="tanh", bias=True))
  x = jnp.ones((2, 6))
  v = layer.init(jax.random.key(0), x)
  k = v["params"]["kernel"]
  np.testing.assert_allclose(v["quant"]["kernel"], 2 * jnp.mean(jnp.abs(k)) / math.sqrt(3),
                             rtol=1e-6)
  np.testing.assert_allclose(v["quant"]["bias"], v["quant"]["kernel"][0])
  # The scale takes no gradient (fixed α); the kernel gets the tanh-STE gradient.
  g = jax.grad(lambda v: jnp.sum(layer.apply(v, x)), allow_int=True)(v)
  assert float(jnp.abs(g["quant"]["kernel"]).sum()) == 0.0
  assert float(jnp.abs(g["params"]["kernel"]).sum()) > 0


def test_fixed_epsilon_and_mask():
  spec = quant.QuantSpec(kind="fixed", bits=2, ste="hardtanh")
  params = {"a": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}, "norm": {"scale": jnp.ones(2)}}
  q = {"a": {"kernel": jnp.full((1, 1), 0.2)}}
  eps = quant.epsilon_from_params(params, q, spec)
  np.testing.assert_allclose(eps["a"]["kernel"], 0.2 / math.sqrt(3), rtol=1e-6)
  assert jax.tree.structure(eps) == jax.tree.structure(params)
  assert quant.quantized_mask(params, q) == {"a": {"kernel": True, "bias": False},
                                             "norm": {"scale": False}}
