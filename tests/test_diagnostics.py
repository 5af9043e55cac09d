"""Diagnostics on a quadratic, where ∇L_s = ∇f exactly (zero-mean smoothing of a quadratic)."""

import jax
import jax.numpy as jnp
import numpy as np

from fogzo_jax import diagnostics

rng = np.random.default_rng(0)
M = rng.normal(size=(20, 20))
A = jnp.asarray(M @ M.T / 20 + np.eye(20), jnp.float32)
PARAMS = {"w": jnp.asarray(rng.normal(size=20), jnp.float32)}


def value_fn(params, shift):
  return 0.5 * params["w"] @ A @ params["w"] + shift @ params["w"]


def test_compare_on_quadratic():
  shift = jnp.ones(20)
  rows, self_cos = diagnostics.compare(value_fn, PARAMS, 0.05, "uniform", jax.random.key(0),
                                       betas=(1.0, 0.5), ns=(1, 100), num_keys=64,
                                       reference_n=40000, shift=shift)
  truth = np.asarray(A @ PARAMS["w"] + shift)
  by = {r.name: r for r in rows}
  assert self_cos > 0.99
  # The "STE" here is the exact gradient: cosine ≈ 1 up to the reference's own noise.
  assert by["ste"].cosine > 0.99 and by["ste"].bias < 0.05 and by["ste"].variance == 0
  # β = 1 with the exact gradient direction: every estimate equals ĝĝᵀ∇f = ∇f.
  assert by["fogzo beta=1.0 n=1"].variance < 1e-6 and by["fogzo beta=1.0 n=1"].cosine > 0.99
  # n-SPSA: unbiased, variance ∝ 1/n (K = 64 keys: ratio within a factor of 3 of 1/100).
  v1, v100 = by["nspsa n=1"].variance, by["nspsa n=100"].variance
  assert 1 / 300 < v100 / v1 < 3 / 100
  assert by["nspsa n=100"].bias < 0.1
  assert by["nspsa n=100"].cosine > by["nspsa n=1"].cosine
  assert by["fogzo beta=0.5 n=1"].forward_passes == 5 and by["nspsa n=100"].forward_passes == 200
  ref, _ = diagnostics.reference_gradient(value_fn, PARAMS, 0.05, "uniform", jax.random.key(1),
                                          40000, shift=shift)
  assert np.linalg.norm(ref - truth) / np.linalg.norm(truth) < 0.05
