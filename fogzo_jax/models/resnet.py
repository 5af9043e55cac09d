"""ResNet-18/50 (He et al. 2016; torchvision layout, v1.5 strides) with quantized convolutions.

Stem: 7×7/2 conv + 3×3/2 max-pool for ImageNet-sized inputs, or a 3×3/1 conv without pooling
for small images (``stem="auto"`` picks it when the input side is ≤ 64 px: Fashion-MNIST,
CIFAR). As in the LSQ recipe the stem conv and the classifier stay full precision unless
``quantize_first_last``; activations entering quantized convs are post-ReLU, so their levels
are unsigned. BatchNorm: batch statistics in training, running averages (momentum 0.9) in eval.
With 1000 classes and no quantization: ResNet-18 11,689,512 and ResNet-50 25,557,032 parameters.
The loops below run over the (static) stages and blocks at trace time; the stages have
different shapes, so there is nothing to scan.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from fogzo_jax.quant.layers import NO_QUANT, QuantConv, QuantDense, QuantSpec

STEMS = ("auto", "imagenet", "small")


class BasicBlock(nn.Module):
  filters: int
  conv: Any
  norm: Any
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), (self.strides,) * 2)(x)))
    y = self.norm()(self.conv(self.filters, (3, 3))(y))
    if x.shape != y.shape:
      x = self.norm()(self.conv(self.filters, (1, 1), (self.strides,) * 2, name="downsample")(x))
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  filters: int
  conv: Any
  norm: Any
  strides: int = 1

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm()(self.conv(self.filters, (1, 1))(x)))
    y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), (self.strides,) * 2)(y)))
    y = self.norm()(self.conv(4 * self.filters, (1, 1))(y))
    if x.shape != y.shape:
      x = self.norm()(self.conv(4 * self.filters, (1, 1), (self.strides,) * 2,
                                name="downsample")(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """Images [B, H, W, C] → logits [B, num_classes]."""
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = "basic"                 # "basic" (ResNet-18/34) | "bottleneck" (ResNet-50+)
  num_classes: int = 1000
  width: int = 64                      # channels of the first stage
  stem: str = "auto"
  spec: QuantSpec = NO_QUANT
  quantize_first_last: bool = False
  dtype: Any = jnp.float32          # compute dtype (bfloat16 on accelerators)
  param_dtype: Any = jnp.float32    # storage dtype of the parameters

  @nn.compact
  def __call__(self, x, train: bool = True):
    if self.stem not in STEMS:
      raise ValueError(f"stem must be one of {STEMS}; got {self.stem!r}")
    small = self.stem == "small" or (self.stem == "auto" and x.shape[1] <= 64)
    edge = self.spec if self.quantize_first_last else NO_QUANT
    dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv_axes = dict(kernel_axes=(None, None, "embed", "mlp"))  # logical axes (train.sharding)
    conv = functools.partial(QuantConv, spec=self.spec, **conv_axes, **dtypes)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, **dtypes)
    x = x.astype(self.dtype)
    if small:
      x = QuantConv(self.width, (3, 3), spec=edge, act_signed=True, name="stem",
                    **conv_axes, **dtypes)(x)
    else:
      x = QuantConv(self.width, (7, 7), (2, 2), [(3, 3), (3, 3)], spec=edge,
                    act_signed=True, name="stem", **conv_axes, **dtypes)(x)
    x = nn.relu(norm(name="stem_bn")(x))
    if not small:
      x = nn.max_pool(x, (3, 3), (2, 2), padding=[(1, 1), (1, 1)])
    block = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
    for i, size in enumerate(self.stage_sizes):
      for j in range(size):
        strides = 2 if i > 0 and j == 0 else 1
        x = block(self.width * 2 ** i, conv, norm, strides, name=f"stage{i + 1}_block{j + 1}")(x)
    x = jnp.mean(x, axis=(1, 2))
    x = QuantDense(self.num_classes, spec=edge, act_signed=False, kernel_axes=("embed", "mlp"),
                   name="head", **dtypes)(x)
    return x.astype(jnp.float32)


class ResNet18(ResNet):
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = "basic"


class ResNet50(ResNet):
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = "bottleneck"
