"""LLaMA: the size table, causal and per-document attention, RoPE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fogzo_jax import models
from fogzo_jax.models import llama

NON_EMBEDDING = {"llama_9m": 8_893_120, "llama_20m": 19_504_576, "llama_30m": 29_745_280,
                 "llama_95m": 92_033_280, "llama_200m": 202_408_960, "llama_300m": 297_409_280}


@pytest.mark.parametrize("name", list(NON_EMBEDDING))
def test_non_embedding_parameter_counts(name):
  model = models.get_model(name, vocab_size=32000)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))
  params = shapes["params"]
  total = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  embedding = 2 * 32000 * llama.LLAMA_SIZES[name][0]  # untied embedding + head
  assert total - embedding == NON_EMBEDDING[name]
  assert f"{NON_EMBEDDING[name]:,}" in llama.__doc__  # the documented table is the real one


def small():
  model = models.get_model("llama_9m", vocab_size=50, dim=32, layers=2, heads=2)
  tokens = jax.random.randint(jax.random.key(0), (2, 12), 0, 50)
  return model, model.init(jax.random.key(1), tokens), tokens


def test_attention_is_causal():
  model, v, tokens = small()
  out = model.apply(v, tokens)
  changed = model.apply(v, tokens.at[:, 7].set((tokens[:, 7] + 1) % 50))
  np.testing.assert_array_equal(out[:, :7], changed[:, :7])   # the past ignores the future
  assert float(jnp.abs(out[:, 7:] - changed[:, 7:]).max()) > 0


def test_segments_do_not_attend_across_documents():
  model, v, tokens = small()
  seg = jnp.array([[1] * 5 + [2] * 7] * 2)
  out = model.apply(v, tokens, seg)
  changed = model.apply(v, tokens.at[:, 1].set((tokens[:, 1] + 1) % 50), seg)
  np.testing.assert_array_equal(out[:, 5:], changed[:, 5:])   # document 2 never sees document 1
  assert float(jnp.abs(out[:, 1:5] - changed[:, 1:5]).max()) > 0


def test_rope_preserves_norms_and_relative_positions():
  x = jax.random.normal(jax.random.key(2), (1, 6, 1, 8))
  r = llama.rope(x)
  np.testing.assert_allclose(jnp.linalg.norm(r, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  q = jnp.broadcast_to(x[:, :1], x.shape)  # the same vector at every position
  rq = llama.rope(q)
  dots = jnp.einsum("btd,bsd->ts", rq[:, :, 0], rq[:, :, 0])
  np.testing.assert_allclose(dots[0, 2], dots[3, 5], rtol=1e-5)  # depends on t − s only
