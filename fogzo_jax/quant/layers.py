"""Quantized Flax layers.

The fixed quantizer scale α of each tensor lives in the ``quant`` variable collection, under the
same path as the tensor in ``params``; so ``variables["quant"]`` has the structure of
``variables["params"]`` and the FOGZO radius is ``jax.tree.map(lambda a: a * ε̄, quant)``
(``quant_epsilon``).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from fogzo_jax import perturbations
from fogzo_jax.quant.fixed import levels, quantize


def lsq_init_scale(w: jax.Array, bits: int) -> jax.Array:
  """α = 2·mean|w| / √Q_P (LSQ's initial step size, Esser et al. 2020), Q_P = max(1, 2^(b−1)−1)."""
  q_p = max(1, levels(bits)[1])
  return 2 * jnp.mean(jnp.abs(w)) / math.sqrt(q_p)


class QuantDense(nn.Module):
  """Dense layer whose kernel and bias are quantized to ``bits`` with a fixed scale α.

  α is set once at init from the initial kernel by the LSQ rule (``lsq_init_scale``) and then
  held fixed (the paper's fixed-α quantizer); the bias uses the kernel's α. ``bits=None`` gives a
  full-precision layer. Input [..., in], output [..., features].
  """
  features: int
  bits: int | None = 2
  ste: str = "identity"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    if self.bits is not None:
      alpha = self.variable("quant", "kernel", lambda: lsq_init_scale(kernel, self.bits)).value
      self.variable("quant", "bias", lambda: jnp.array(alpha, copy=True))  # own buffer
      kernel = quantize(kernel, self.bits, jax.lax.stop_gradient(alpha), self.ste)
      bias = quantize(bias, self.bits, jax.lax.stop_gradient(alpha), self.ste)
    return x @ kernel + bias


def quant_epsilon(quant_scales, ste: str):
  """ε = α·ε̄(ste) for every quantized tensor: a pytree with the structure of ``quant_scales``."""
  eps_bar = perturbations.implicit_smoothing(ste).eps_bar
  return jax.tree.map(lambda a: a * eps_bar, quant_scales)
