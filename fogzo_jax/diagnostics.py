"""Bias and variance of gradient estimators against the smoothed true gradient.

The paper's argument (Sec. 3): the STE gradient g is a biased estimate of ∇L_s, the gradient of
the smoothed loss L_s(θ) = E_u[L(θ + ε⊙u)]; n-SPSA is unbiased for it but noisy; FOGZO trades
between the two with β. For one batch and one θ this module measures, per estimator:

  cosine    mean over K keys of cos(G_k, R)
  bias      ‖mean_k G_k − R‖ / ‖R‖
  variance  mean_k ‖G_k − mean_k G_k‖² / ‖R‖²
  forward_passes  per estimate (backward = 2 forwards)

with R a large-n n-SPSA estimate of ∇L_s (``reference_gradient``; its own noise is reported as
the cosine between two independent halves).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fogzo_jax import estimators


class EstimatorStats(NamedTuple):
  name: str
  cosine: float
  bias: float
  variance: float
  forward_passes: int


def _estimates(tx, grads, params, value_fn, keys, **kwargs) -> np.ndarray:
  """[K, d] flat estimates of ``tx`` for each key (sequential over keys, vmapped within)."""
  def one(key_data):
    state = estimators.ZerothOrderState(jnp.zeros([], jnp.int32), key_data)
    out, _ = tx.update(grads, state, params, value_fn=value_fn, **kwargs)
    return ravel_pytree(out)[0]
  key_data = jax.vmap(jax.random.key_data)(keys)
  return np.asarray(jax.jit(lambda k: jax.lax.map(one, k))(key_data), np.float64)


def reference_gradient(value_fn: Callable, params, epsilon, noise: str, key,
                       num_perturbations: int = 65536, chunk_size: int = 2048, **kwargs
                       ) -> tuple[np.ndarray, float]:
  """Large-n n-SPSA estimate of ∇L_s, flat [d], and the cosine between its two halves."""
  half = num_perturbations // 2
  tx = estimators.nspsa(half, epsilon=epsilon, noise=noise, chunk_size=chunk_size)
  zeros = jax.tree.map(jnp.zeros_like, params)
  a, b = _estimates(tx, zeros, params, value_fn, jax.random.split(key, 2), **kwargs)
  return (a + b) / 2, float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def stats(name: str, samples: np.ndarray, reference: np.ndarray,
          forward_passes: int) -> EstimatorStats:
  """Statistics of [K, d] samples against the flat reference [d]."""
  ref_norm = np.linalg.norm(reference)
  mean = samples.mean(0)
  cos = samples @ reference / (np.linalg.norm(samples, axis=1) * ref_norm + 1e-30)
  return EstimatorStats(name, float(cos.mean()), float(np.linalg.norm(mean - reference) / ref_norm),
                        float(np.mean(np.sum((samples - mean) ** 2, 1)) / ref_norm ** 2),
                        forward_passes)


def compare(value_fn: Callable, params, epsilon, noise: str, key, *, betas=(1.0, 0.999, 0.9, 0.5),
            ns=(1, 10, 100), num_keys: int = 16, reference_n: int = 65536, **kwargs
            ) -> tuple[list[EstimatorStats], float]:
  """STE, FOGZO(β, n) for β in ``betas`` and n in ``ns``, n-SPSA(n): stats against the
  reference. ``value_fn(params, **kwargs)`` is the loss with STE quantizers inside."""
  k_ref, k_est = jax.random.split(key)
  reference, self_cos = reference_gradient(value_fn, params, epsilon, noise, k_ref,
                                           reference_n, **kwargs)
  grads = jax.grad(value_fn)(params, **kwargs)
  rows = [stats("ste", np.asarray(ravel_pytree(grads)[0], np.float64)[None], reference, 3)]
  keys = jax.random.split(k_est, num_keys)
  for n in ns:
    for beta in betas:
      tx = estimators.fogzo(n, beta=beta, epsilon=epsilon, noise=noise)
      rows.append(stats(f"fogzo beta={beta} n={n}",
                        _estimates(tx, grads, params, value_fn, keys, **kwargs), reference,
                        3 + 2 * n))
    tx = estimators.nspsa(n, epsilon=epsilon, noise=noise)
    rows.append(stats(f"nspsa n={n}", _estimates(tx, grads, params, value_fn, keys, **kwargs),
                      reference, 2 * n))
  return rows, self_cos
