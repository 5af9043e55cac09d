"""DeiT-Tiny/Small (Touvron et al. 2021): a ViT with a class token and quantized linear layers.

Patch embedding (a patch×patch conv with stride patch) → [CLS] + learned position embedding →
``depth`` pre-norm blocks (multi-head self-attention, MLP ×4 with GELU) → LayerNorm → head on the
class token. The blocks are one ``nn.scan`` (parameters stacked along a leading depth axis).
``patch_size=0`` picks 16 for inputs ≥ 128 px and 4 below (28-px Fashion-MNIST → 7×7 patches).
Patch embedding and head stay full precision unless ``quantize_first_last``. No dropout or
stochastic depth (the reduced-scale runs are short; add them with the DeiT recipe's rates if
needed). With 224 px, 3 channels and 1000 classes: DeiT-Tiny 5,717,416 and DeiT-Small
22,050,664 parameters, as timm's models.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from fogzo_jax.quant.layers import NO_QUANT, QuantConv, QuantDense, QuantSpec


def resolve_patch_size(patch_size: int, image_size: int) -> int:
  """``patch_size``, or for 0 the automatic choice: 16 for inputs ≥ 128 px, else 4."""
  return patch_size or (16 if image_size >= 128 else 4)


class Block(nn.Module):
  """x [B, N, D] → x [B, N, D]; the scan carry."""
  heads: int
  mlp_ratio: int
  spec: QuantSpec
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, _):
    b, n, d = x.shape
    dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dense = functools.partial(QuantDense, spec=self.spec, kernel_axes=("embed", "mlp"), **dtypes)
    norm = functools.partial(nn.LayerNorm, epsilon=1e-6, **dtypes)
    y = norm(name="norm1")(x)
    qkv = dense(3 * d, name="qkv")(y).reshape(b, n, 3, self.heads, d // self.heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    y = nn.dot_product_attention(q, k, v, dtype=self.dtype).reshape(b, n, d)
    x = x + dense(d, name="proj")(y)
    y = nn.gelu(dense(self.mlp_ratio * d, name="fc1")(norm(name="norm2")(x)), approximate=False)
    return x + dense(d, name="fc2")(y), None


class ViT(nn.Module):
  """Images [B, H, W, C] → logits [B, num_classes]."""
  hidden: int = 192
  depth: int = 12
  heads: int = 3
  mlp_ratio: int = 4
  patch_size: int = 0
  num_classes: int = 1000
  spec: QuantSpec = NO_QUANT
  quantize_first_last: bool = False
  dtype: Any = jnp.float32          # compute dtype (bfloat16 on accelerators)
  param_dtype: Any = jnp.float32    # storage dtype of the parameters
  scan_unroll: int = 1              # blocks per iteration of the scan (same numbers, other code)

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train  # no dropout, no batch statistics
    dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    patch = resolve_patch_size(self.patch_size, x.shape[1])
    if x.shape[1] % patch or x.shape[2] % patch:
      raise ValueError(f"image size {x.shape[1]}×{x.shape[2]} is not divisible by the patch "
                       f"size {patch}")
    edge = self.spec if self.quantize_first_last else NO_QUANT
    x = QuantConv(self.hidden, (patch, patch), (patch, patch), "VALID", spec=edge,
                  use_bias=True, act_signed=True, kernel_init=nn.initializers.lecun_normal(),
                  kernel_axes=(None, None, "embed", "mlp"), name="patch_embed", **dtypes)(x)
    b = x.shape[0]
    x = x.reshape(b, -1, self.hidden)
    cls = self.param("cls_token", nn.initializers.zeros, (1, 1, self.hidden), self.param_dtype)
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.hidden)).astype(x.dtype), x], 1)
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, x.shape[1], self.hidden),
                     self.param_dtype)
    x = x + pos.astype(x.dtype)
    blocks = nn.scan(Block, variable_axes={"params": 0, "quant": 0},
                     split_rngs={"params": True}, length=self.depth, unroll=self.scan_unroll,
                     metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = blocks(self.heads, self.mlp_ratio, self.spec, self.dtype, self.param_dtype,
                  name="blocks")(x, None)
    x = nn.LayerNorm(epsilon=1e-6, name="norm", **dtypes)(x)
    x = QuantDense(self.num_classes, spec=edge, kernel_axes=("embed", "mlp"), name="head",
                   **dtypes)(x[:, 0])
    return x.astype(jnp.float32)


class DeiTTiny(ViT):
  hidden: int = 192
  depth: int = 12
  heads: int = 3


class DeiTSmall(ViT):
  hidden: int = 384
  depth: int = 12
  heads: int = 6
