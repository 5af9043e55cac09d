import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fogzo_jax import models, quant


def test_mlp_shapes_and_parameter_count():
  model = models.get_model("mlp")
  variables = nn.unbox(model.init(jax.random.key(0), jnp.zeros((2, 28, 28))))
  assert sum(x.size for x in jax.tree.leaves(variables["params"])) == 7960  # 784-10-10
  assert jax.tree.structure(variables["quant"]) == jax.tree.structure(variables["params"])
  assert model.apply(variables, jnp.ones((5, 28, 28))).shape == (5, 10)


def test_mlp_uses_quantized_weights():
  model = models.get_model("mlp", spec=quant.QuantSpec(kind="fixed", bits=2, bias=True))
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28))
  v = nn.unbox(model.init(jax.random.key(0), x))
  p, q = v["params"], v["quant"]
  qz = lambda name, leaf: quant.quantize(p[name][leaf], 2, q[name][leaf])
  assert q["Dense_0"]["kernel"].shape == (1, 1) and q["Dense_0"]["bias"].shape == (1,)
  h = jax.nn.relu(x.reshape(4, -1) @ qz("Dense_0", "kernel") + qz("Dense_0", "bias"))
  ref = h @ qz("Dense_1", "kernel") + qz("Dense_1", "bias")
  np.testing.assert_allclose(model.apply(v, x), ref, rtol=1e-5, atol=1e-6)
  full = models.get_model("mlp", spec=quant.NO_QUANT)
  vf = full.init(jax.random.key(0), x)
  assert "quant" not in vf


def test_unknown_model():
  with pytest.raises(ValueError, match="model must be one of 'mlp', 'resnet18'"):
    models.get_model("resnet1000")
  with pytest.raises(ValueError, match="model 'mlp' has no option 'bits'"):
    models.get_model("mlp", bits=2)


def test_weight_and_activation_mlp_uses_unsigned_levels_after_relu():
  """W+A: the first layer's input (pixels) is signed-quantized, the second's (post-ReLU) uses
  the unsigned levels 0 … 2^b − 1, so no half of its grid is wasted on negative values."""
  spec = quant.QuantSpec(kind="fixed", bits=2, activations=True)
  model = models.get_model("mlp", spec=spec)
  x = jax.random.uniform(jax.random.key(1), (64, 28, 28))
  v = nn.unbox(model.init(jax.random.key(0), x))
  _, inter = model.apply(v, x, capture_intermediates=True, mutable=["intermediates"])
  hidden = jax.nn.relu(inter["intermediates"]["Dense_0"]["__call__"][0])
  step = v["quant"]["Dense_1"]["input"]
  q = quant.quantize(hidden, 2, step, signed=False)
  assert set(np.unique(np.round(np.asarray(q / step)))) <= {0.0, 1.0, 2.0, 3.0}
  assert len(set(np.unique(np.round(np.asarray(q / step))))) > 2  # levels above 1 are used
  # The layer's own forward matches this unsigned quantization.
  w = quant.quantize(v["params"]["Dense_1"]["kernel"], 2, v["quant"]["Dense_1"]["kernel"])
  np.testing.assert_allclose(model.apply(v, x), q @ w + v["params"]["Dense_1"]["bias"],
                             rtol=1e-5, atol=1e-5)
