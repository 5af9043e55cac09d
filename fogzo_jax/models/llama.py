"""A LLaMA-style decoder (RMSNorm, RoPE, SwiGLU, causal attention) with quantized linear layers.

tokens [B, T] int32 → logits [B, T, vocab]. Pre-norm blocks, no biases, untied embedding and
output head, one ``nn.scan`` over the blocks. The attention projections and the SwiGLU matrices
are quantized with ``spec``; the embedding and the head stay full precision unless
``quantize_first_last`` (then the head is quantized; the embedding lookup never is).

Sizes (``LLAMA_SIZES``) are chosen so that the non-embedding parameter count (blocks + final
norm) matches the name; head dimension 64, SwiGLU width ⌈(8/3)·d / 64⌉·64:

| name       | d    | layers | heads | ffn  | non-embedding params |
|------------|------|--------|-------|------|----------------------|
| llama_9m   | 320  | 7      | 5     | 896  | 8,893,120            |
| llama_20m  | 448  | 8      | 7     | 1216 | 19,504,576           |
| llama_30m  | 640  | 6      | 10    | 1728 | 29,745,280           |
| llama_95m  | 768  | 13     | 12    | 2048 | 92,033,280           |
| llama_200m | 1024 | 16     | 16    | 2752 | 202,408,960          |
| llama_300m | 1280 | 15     | 20    | 3456 | 297,409,280          |

(tests/models/test_llama.py checks the table against the built models.)
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fogzo_jax.quant.layers import NO_QUANT, QuantDense, QuantSpec

LLAMA_SIZES = {  # name: (dim, layers, heads)
    "llama_9m": (320, 7, 5),
    "llama_20m": (448, 8, 7),
    "llama_30m": (640, 6, 10),
    "llama_95m": (768, 13, 12),
    "llama_200m": (1024, 16, 16),
    "llama_300m": (1280, 15, 20),
}


def ffn_width(dim: int, multiple: int = 64) -> int:
  return multiple * math.ceil(int(8 * dim / 3) / multiple)


def rope(x: jax.Array, base: float = 10000.0) -> jax.Array:
  """Rotary position embedding of x [B, T, H, Dh] (pairs (i, i + Dh/2) rotated by t·base^(−2i/Dh))."""
  t, dh = x.shape[1], x.shape[-1]
  freq = base ** (-jnp.arange(0, dh // 2, dtype=jnp.float32) * 2 / dh)
  angle = jnp.arange(t, dtype=jnp.float32)[:, None] * freq[None]          # [T, Dh/2]
  cos, sin = jnp.cos(angle)[None, :, None], jnp.sin(angle)[None, :, None]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).astype(x.dtype)


class RMSNorm(nn.Module):
  eps: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    w = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + self.eps)
    return (y * w).astype(self.dtype)


class Block(nn.Module):
  """x [B, T, D] → x [B, T, D] (the scan carry); mask [B, 1, T, T] is broadcast to every layer."""
  heads: int
  ffn: int
  spec: QuantSpec
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, mask):
    b, t, d = x.shape
    dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    dense = functools.partial(QuantDense, spec=self.spec, use_bias=False,
                              kernel_init=nn.initializers.normal(0.02),
                              kernel_axes=("embed", "mlp"), **dtypes)
    y = RMSNorm(name="attn_norm", **dtypes)(x)
    shape = (b, t, self.heads, d // self.heads)
    q = rope(dense(d, name="wq")(y).reshape(shape))
    k = rope(dense(d, name="wk")(y).reshape(shape))
    v = dense(d, name="wv")(y).reshape(shape)
    y = nn.dot_product_attention(q, k, v, mask=mask, dtype=self.dtype).reshape(b, t, d)
    x = x + dense(d, name="wo")(y)
    y = RMSNorm(name="ffn_norm", **dtypes)(x)
    y = nn.silu(dense(self.ffn, name="w1")(y)) * dense(self.ffn, name="w3")(y)
    return x + dense(d, name="w2")(y), None


class Llama(nn.Module):
  vocab_size: int = 256
  dim: int = 320
  layers: int = 7
  heads: int = 5
  spec: QuantSpec = NO_QUANT
  quantize_first_last: bool = False
  dtype: Any = jnp.float32          # compute dtype (bfloat16 on accelerators)
  param_dtype: Any = jnp.float32    # storage dtype of the parameters
  scan_unroll: int = 1              # blocks per iteration of the scan (same numbers, other code)

  @nn.compact
  def __call__(self, tokens, segment_ids=None, train: bool = True):
    """tokens [B, T] → logits [B, T, vocab]; ``segment_ids`` [B, T] (packed documents) restrict
    attention to the same document on top of the causal mask."""
    del train
    mask = nn.make_causal_mask(tokens)
    if segment_ids is not None:
      mask = nn.combine_masks(mask, nn.make_attention_mask(segment_ids, segment_ids, jnp.equal))
    dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    embedding_init = nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                  ("vocab", "embed"))
    x = nn.Embed(self.vocab_size, self.dim, embedding_init=embedding_init, name="embed",
                 **dtypes)(tokens).astype(self.dtype)
    blocks = nn.scan(Block, variable_axes={"params": 0, "quant": 0},
                     split_rngs={"params": True}, in_axes=nn.broadcast, length=self.layers,
                     unroll=self.scan_unroll, metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = blocks(self.heads, ffn_width(self.dim), self.spec, self.dtype, self.param_dtype,
                  name="blocks")(x, mask)
    x = RMSNorm(name="norm", **dtypes)(x)
    head = QuantDense(self.vocab_size, spec=self.spec if self.quantize_first_last else NO_QUANT,
                      use_bias=False, kernel_init=nn.initializers.normal(0.02),
                      kernel_axes=("embed", "vocab"), name="head", **dtypes)
    return head(x).astype(jnp.float32)


def _sized(name: str):
  dim, layers, heads = LLAMA_SIZES[name]
  return type(name, (Llama,), {"__annotations__": {"dim": int, "layers": int, "heads": int},
                               "dim": dim, "layers": layers, "heads": heads,
                               "__module__": __name__})


LLAMA_MODELS = {name: _sized(name) for name in LLAMA_SIZES}
