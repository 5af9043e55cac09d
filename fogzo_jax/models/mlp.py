"""The paper's MNIST model (Sec. 4.1): MLP 784-10-10 with ReLU, every weight and bias quantized."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fogzo_jax.quant.layers import QuantDense, QuantSpec


class MLP(nn.Module):
  """Images [B, H, W(, C)] → logits [B, features[-1]]; 784-10-10 has 7,960 parameters.

  ``num_classes`` (when given) replaces the last width. Every layer is quantized with ``spec``
  (the paper quantizes all of them, biases included: ``QuantSpec(bias=True)``).
  """
  features: Sequence[int] = (10, 10)
  num_classes: int | None = None
  spec: QuantSpec = QuantSpec(kind="fixed", bits=2, bias=True)

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train  # no batch-dependent layers
    widths = list(self.features)
    if self.num_classes:
      widths[-1] = self.num_classes
    x = jnp.reshape(x, (x.shape[0], -1))
    for i, width in enumerate(widths):  # static: two layers
      x = QuantDense(width, spec=self.spec, act_signed=i == 0,  # post-ReLU inputs: unsigned
                     kernel_axes=("embed", "mlp"), name=f"Dense_{i}")(x)
      if i < len(widths) - 1:
        x = nn.relu(x)
    return x
