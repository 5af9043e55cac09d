"""The paper's MNIST model (Sec. 4.1): MLP 784-10-10 with ReLU, every weight and bias quantized."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fogzo_jax.quant.layers import QuantDense


class MLP(nn.Module):
  """Images [B, H, W(, C)] → logits [B, features[-1]]; 784-10-10 has 7,960 parameters."""
  features: Sequence[int] = (10, 10)
  bits: int | None = 2
  ste: str = "identity"

  @nn.compact
  def __call__(self, x):
    x = jnp.reshape(x, (x.shape[0], -1))
    for i, width in enumerate(self.features):
      x = QuantDense(width, bits=self.bits, ste=self.ste, name=f"Dense_{i}")(x)
      if i < len(self.features) - 1:
        x = nn.relu(x)
    return x
