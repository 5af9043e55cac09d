import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def test_lsq_layer_learns_its_step_and_epsilon_follows_it():
  spec = quant.QuantSpec(kind="lsq", bits=2, activations=True)
  layer = quant.QuantDense(4, spec=spec)
  x = jax.random.normal(jax.random.key(1), (8, 6))
  v = layer.init(jax.random.key(0), x)
  p = v["params"]
  assert set(p) == {"kernel", "bias", "kernel_scale", "input_scale"}
  np.testing.assert_allclose(p["kernel_scale"], 2 * jnp.mean(jnp.abs(p["kernel"])), rtol=1e-6)
  g = jax.grad(lambda p: jnp.sum(layer.apply({**v, "params": p}, x) ** 2))(p)
  assert float(jnp.abs(g["kernel_scale"]).sum()) > 0 and float(jnp.abs(g["input_scale"]).sum()) > 0
  # Only the kernel is perturbed; its ε is |s|·ε̄(identity) with s the *current* learned step.
  assert quant.quantized_mask(p, v["quant"]) == {"kernel": True, "bias": False,
                                                 "kernel_scale": False, "input_scale": False}
  moved = {**p, "kernel_scale": p["kernel_scale"] * 3}
  eps = quant.epsilon_from_params(moved, v["quant"], spec)["kernel"]
  np.testing.assert_allclose(eps, 3 * p["kernel_scale"] / (2 * math.sqrt(3)), rtol=1e-6)


def test_conv_quantized_kernel_and_unsigned_input():
  spec = quant.QuantSpec(kind="fixed", bits=2, activations=True)
  conv = quant.QuantConv(3, (3, 3), spec=spec)
  x = jax.random.uniform(jax.random.key(2), (2, 6, 6, 2))
  v = conv.init(jax.random.key(0), x)
  alpha, a_in = v["quant"]["kernel"], v["quant"]["input"]
  w = quant.quantize(v["params"]["kernel"], 2, alpha)
  xq = quant.quantize(x, 2, a_in, signed=False)  # post-ReLU inputs: levels 0 … 3
  assert set(np.unique(np.round(np.asarray(xq / a_in), 4))) <= {0.0, 1.0, 2.0, 3.0}
  ref = jax.lax.conv_general_dilated(xq, w, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(conv.apply(v, x), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="int8"), "quant must be one of 'none', 'fixed', 'lsq', 'quest'"),
    (dict(kind="lsq", ste="tanh"), "ste must be 'identity' with quant='lsq'"),
    (dict(kind="quest", bits=12), "bits must be one of"),
    (dict(kind="fixed", bits=0), "bits must be an integer"),
    (dict(kind="fixed", ste="relu"), "ste must be one of"),
])
def test_quant_spec_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    quant.QuantSpec(**kwargs)


@pytest.mark.parametrize("kind", ["fixed", "lsq"])
def test_per_channel_steps(kind):
  spec = quant.QuantSpec(kind=kind, bits=3, per_channel=True, bias=True)
  layer = quant.QuantDense(5, spec=spec)
  x = jax.random.normal(jax.random.key(3), (4, 7))
  v = layer.init(jax.random.key(0), x)
  k = v["params"]["kernel"]
  expected = 2 * jnp.mean(jnp.abs(k), axis=0, keepdims=True) / math.sqrt(3)  # [1, 5]
  step = v["quant"]["kernel"] if kind == "fixed" else v["params"]["kernel_scale"]
  np.testing.assert_allclose(step, expected, rtol=1e-6)
  w = quant.quantize(k, 3, expected)
  np.testing.assert_allclose(layer.apply(v, x), x @ w + quant.quantize(
      v["params"]["bias"], 3, expected[0]), rtol=1e-5, atol=1e-6)
  eps = quant.epsilon_from_params(v["params"], v["quant"], spec)
  assert eps["kernel"].shape == (1, 5) and eps["bias"].shape == (5,)
  np.testing.assert_allclose(eps["bias"], expected[0] / (2 * math.sqrt(3)), rtol=1e-6)
