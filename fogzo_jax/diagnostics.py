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
import optax
from jax.flatten_util import ravel_pytree

from fogzo_jax import _inputs as inputs
from fogzo_jax import estimators, perturbations


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


# ----------------------------------------------------------------- the line-search scalar


class LineSearchTerms(NamedTuple):
  """What FOGZO's line search along the STE direction measures, for one batch (issue 14).

  With h the scaled STE direction (``g_hat_norm``, ``g_hat_clip``; ‖h‖ = 1 for the paper's
  unit ĝ), FOGZO at β = 1 returns G = c·h ⊘ ε with the line-search scalar
  c = [f(θ + ε⊙h) − f(θ − ε⊙h)] / 2.

  Attributes:
    raw: c at θ (the paper's pair).
    smoothed: [num_base] the same pair around θ + ε⊙u₀ for independent u₀ from the noise law;
      their mean estimates R = [L_s(θ + ε⊙h) − L_s(θ − ε⊙h)] / 2, the slope of the smoothed
      loss that the STE differentiates (an unbiased reference), their spread is the noise of a
      one-sample smoothed-base c.
    ste: Σ ε_j g_j h_j, the half-difference the STE's own linear model predicts.
    crossings: perturbed elements whose quantized value differs between θ ± ε⊙h (−1 when no
      grid is given).
    size: d, the number of perturbed elements.
  """
  raw: float
  smoothed: np.ndarray
  ste: float
  crossings: float
  size: float


def line_search_fn(value_fn: Callable, epsilon, noise, *, mask=None, g_hat_norm: str = "unit",
                   g_hat_clip=None, num_base: int = 64, levels=None) -> Callable:
  """A jitted ``fn(params, grads, key, steps=None, **kwargs) -> LineSearchTerms``: FOGZO's
  line-search scalar (β = 1) and its smoothed reference on one batch.

  Args:
    value_fn: the loss ``value_fn(params, **kwargs)`` (quantized forward).
    epsilon, noise, mask, g_hat_norm, g_hat_clip: as for ``fz.fogzo``.
    num_base: number of u₀ samples for the smoothed reference.
    levels: ``(lo, hi)`` integer level range of the quantizer, to count threshold crossings
      with the per-leaf steps α given to ``fn`` as ``steps`` (a pytree like params).

  ``fn``'s ``key`` draws the base shifts u₀; ``grads`` is the STE gradient g at ``params``;
  its keyword arguments go to ``value_fn`` and the ε / mask callables as in ``fz.fogzo``.
  """
  noise_fn = perturbations.get_noise(noise)
  is_none = lambda x: x is None

  @jax.jit
  def terms(params, grads, key, steps, kwargs):
    kwargs, (eps_kwargs, mask_kwargs) = inputs.route_kwargs(value_fn, (epsilon, mask),
                                                                 kwargs)
    parts = inputs.perturbed_parts(params, grads, mask, epsilon, mask_kwargs, eps_kwargs)
    h = estimators.ste_direction(parts.grads, parts.size, g_hat_norm, g_hat_clip)

    def f(shift):
      moved = jax.tree.map(lambda p, e, x: p + (e * x).astype(p.dtype), parts.theta,
                           parts.epsilon, shift)
      full = jax.tree.map(lambda s, p, m: p if s is None else m, parts.selection, params,
                          moved, is_leaf=is_none)
      return jnp.asarray(value_fn(full, **kwargs), jnp.float32)

    def pair(base):
      return 0.5 * (f(optax.tree.add(base, h)) - f(optax.tree.sub(base, h)))

    def smoothed(k):
      u = optax.tree.random_like(k, parts.theta, sampler=noise_fn, dtype=jnp.float32)
      return pair(jax.tree.map(inputs.restrict, parts.selection, u, is_leaf=is_none))

    raw = pair(optax.tree.zeros_like(h))
    samples = jax.lax.map(smoothed, jax.random.split(key, num_base))
    leaves = lambda t: jax.tree.leaves(t)
    ste = sum(jnp.sum(e * g * x) for e, g, x in zip(leaves(parts.epsilon), leaves(parts.grads),
                                                    leaves(h)))
    crossings = jnp.float32(-1)
    if levels is not None:
      alphas = jax.tree.map(lambda s, a: None if s is None else a, parts.selection, steps,
                            is_leaf=is_none)
      lo, hi = levels

      def level(p, e, x, a):
        return jnp.clip(jnp.round((p + e * x) / a), lo, hi)
      crossings = sum(jnp.sum(level(p, e, x, a) != level(p, e, -x, a)) for p, e, x, a in zip(
          *(leaves(t) for t in (parts.theta, parts.epsilon, h, alphas))))
    return raw, samples, ste, crossings, parts.size

  def fn(params, grads, key, steps=None, **kwargs) -> LineSearchTerms:
    raw, samples, ste, crossings, size = terms(params, grads, key, steps, kwargs)
    return LineSearchTerms(float(raw), np.asarray(samples, np.float64), float(ste),
                           float(crossings), float(size))
  return fn


def summarize_line_search(terms: list[LineSearchTerms]) -> dict:
  """Across batches: how well c tracks the smoothed slope R, and how often ĝ descends L_s.

  Returns:
    dict with ``batches``; ``crossings`` (mean); ``ste_descends`` (fraction of batches with
    R > 0 among those where R's sign is resolved, |R| > 2 standard errors; ``resolved`` is
    their fraction); ``raw_sign_agreement`` (sign c = sign R, resolved batches);
    ``raw_corr`` (Pearson correlation of c and R over batches); ``raw_snr`` (mean |R| / rms of
    c − R: the raw scalar's signal-to-noise); ``smoothed_snr`` (mean over batches of |R| / std
    of one smoothed-base sample); ``smoothed_sign_agreement`` (sign of one smoothed sample =
    sign R, averaged); ``ste_ratio`` (median of R / STE prediction).
  """
  raw = np.array([t.raw for t in terms])
  r = np.array([t.smoothed.mean() for t in terms])
  sd = np.array([t.smoothed.std(ddof=1) for t in terms])
  se = sd / np.sqrt(np.array([len(t.smoothed) for t in terms]))
  ste = np.array([t.ste for t in terms])
  resolved = np.abs(r) > 2 * se
  agree = np.array([np.mean(np.sign(t.smoothed) == np.sign(t.smoothed.mean())) for t in terms])
  nan = float("nan")
  return dict(
      batches=len(terms), size=terms[0].size, crossings=float(np.mean([t.crossings for t in terms])),
      resolved=float(resolved.mean()),
      ste_descends=float(np.mean(r[resolved] > 0)) if resolved.any() else nan,
      raw_sign_agreement=float(np.mean(np.sign(raw[resolved]) == np.sign(r[resolved])))
      if resolved.any() else nan,
      raw_corr=float(np.corrcoef(raw, r)[0, 1]) if len(terms) > 2 and raw.std() > 0 else nan,
      raw_snr=float(np.mean(np.abs(r)) / (np.sqrt(np.mean((raw - r) ** 2)) + 1e-30)),
      smoothed_snr=float(np.mean(np.abs(r) / (sd + 1e-30))),
      smoothed_sign_agreement=float(np.mean(agree)),
      ste_ratio=float(np.median(r / np.where(ste == 0, np.nan, ste))),
  )
