"""FOGZO and n-SPSA as optax gradient transformations.

FOGZO (First-Order-Guided Zeroth-Order gradient descent; Yang & Aamodt, NeurIPS 2025,
arXiv:2510.23926, Algorithm 1) turns the biased STE gradient g into a less biased estimate G of
the gradient of the smoothed loss, at the cost of 2n extra forward passes::

  ĝ   = g / ‖g‖                                   (global norm over the perturbed leaves)
  v_i = √β · s_i · ĝ + √(1−β) · u_i               s_i = ±1 (Rademacher), u_i ~ p(u) i.i.d.
  G   = (1/n) Σ_i [f(θ + ε⊙v_i) − f(θ − ε⊙v_i)] / 2 · v_i ⊘ ε

For a scalar ε this is the paper's (f(θ+εv) − f(θ−εv)) / (2ε) · v exactly; a per-leaf (or
per-element) ε divides each leaf's share by its own ε, which keeps E[G] = ∇f for the noise part.
On a quadratic, where central differences are exact, E[G] = β ĝĝᵀ∇f + (1−β) ∇f.
β = 0 without the STE direction is n-SPSA, the unbiased zeroth-order baseline (``nspsa``); both
share one code path here.

Usage follows optax's line-search convention (``value_fn`` plus extra keyword arguments routed
to it)::

  tx = optax.chain(fz.fogzo(num_perturbations=1, beta=fz.linear_beta(0.999, T), epsilon=eps),
                   optax.adamw(learning_rate))
  loss, g = jax.value_and_grad(loss_fn)(params, batch)          # g: STE gradient
  updates, state = tx.update(g, state, params, value_fn=loss_fn, batch=batch)

Vectorisation: the 2n perturbed losses are evaluated with ``jax.vmap`` (the ± pair of each
perturbation in one batch), in chunks of at most ``MAX_CHUNK`` perturbations (a vmapped width of
at most ``2·MAX_CHUNK`` = 4096 evaluations) accumulated by ``lax.scan``. The cap holds whatever
``chunk_size`` asks for: XLA:CPU (jax 0.10.2) silently computes wrong rows of vmaps wider than
8192 (see the project's known issues). Memory is O(chunk · #params).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Union

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fogzo_jax import perturbations

MAX_CHUNK = 2048
"""Most perturbations vmapped at once (each is a ± pair, so 4096 evaluations)."""

EVALUATIONS = ("vmap", "sequential")
"""How the 2n perturbed losses are evaluated: batched with ``vmap`` (default), or one after the
other (``lax.map``; the same G): faster where a vmapped forward with per-element weights is
slow, e.g. convolutions on XLA:CPU (see docs/benchmarks.md)."""

G_HAT_NORMS = ("unit", "rms", "tensor")
"""How ĝ is normalised: "unit" ‖ĝ‖ = 1 (api.md, the paper as reconstructed); "rms" ‖ĝ‖ = √d;
"tensor" each perturbed leaf's part of ĝ has norm 1 (as a per-parameter loop would do it)."""

Epsilon = Union[float, chex.ArrayTree, Callable[[chex.ArrayTree], chex.ArrayTree]]
Beta = Union[float, optax.Schedule]


class ZerothOrderState(NamedTuple):
  """State of ``fogzo`` / ``nspsa``.

  Attributes:
    count: int32 scalar, number of updates done (the step of the β schedule).
    key: uint32[2] raw PRNG key data (``jax.random.key_data``), so the state checkpoints as a
      plain array; advanced by one split per update.
  """
  count: jax.Array
  key: jax.Array


FogzoState = ZerothOrderState
NSpsaState = ZerothOrderState


def _key_data(key) -> jax.Array:
  if isinstance(key, (int, np.integer)):
    return jax.random.key_data(jax.random.key(int(key)))
  key = jnp.asarray(key)
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(key)
  if key.dtype != jnp.uint32 or key.shape != (2,):
    raise ValueError(f"key must be an int or a jax.random key; got dtype {key.dtype}, "
                     f"shape {key.shape}")
  return key


def _check_args(num_perturbations, beta, epsilon, chunk_size) -> None:
  if isinstance(num_perturbations, bool) or int(num_perturbations) != num_perturbations \
      or num_perturbations < 1:
    raise ValueError(f"num_perturbations must be an integer ≥ 1; got {num_perturbations!r}")
  if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
    raise ValueError(f"chunk_size must be None or an integer ≥ 1; got {chunk_size!r}")
  if not callable(beta) and not 0.0 <= float(beta) <= 1.0:
    raise ValueError(f"beta must be a float in [0, 1] or a schedule step -> beta; got {beta!r}")
  if not callable(epsilon):
    for leaf in jax.tree.leaves(epsilon):
      if not isinstance(leaf, jax.core.Tracer) and not np.all(np.asarray(leaf) > 0):
        raise ValueError(f"epsilon must be > 0 (a float, a pytree of per-leaf values or a "
                         f"callable params -> pytree); got {epsilon!r}")


def _leaves_like(tree, treedef, what: str) -> list:
  """Flattens ``tree`` to the leaves of ``treedef``; a scalar is broadcast to every leaf."""
  if not isinstance(tree, (dict, list, tuple)) and jnp.ndim(tree) == 0 and treedef.num_leaves:
    return [tree] * treedef.num_leaves
  leaves, got = jax.tree.flatten(tree)
  if got != treedef:
    raise ValueError(f"{what} must have the structure of params ({treedef}); got {got}")
  return leaves


def _chunking(n: int, chunk_size: Optional[int]) -> tuple[int, int]:
  """(chunk, num_chunks) with chunk ≤ min(chunk_size, MAX_CHUNK) and the least padding."""
  limit = min(chunk_size or n, MAX_CHUNK, n)
  num_chunks = math.ceil(n / limit)
  return math.ceil(n / num_chunks), num_chunks


def _inverse(norm):
  """1/norm, and 0 where norm is 0 (a zero STE gradient gives ĝ = 0, not NaN)."""
  return jnp.where(norm > 0, 1.0 / jnp.where(norm > 0, norm, 1.0), 0.0)


def _zeroth_order(num_perturbations: int, beta: Beta, epsilon: Epsilon,
                  noise: Union[str, perturbations.NoiseFn], key, chunk_size: Optional[int],
                  mask, use_ste_direction: bool, g_hat_norm: str = "unit",
                  evaluation: str = "vmap") -> optax.GradientTransformationExtraArgs:
  """The one code path behind ``fogzo`` (use_ste_direction=True) and ``nspsa`` (False)."""
  _check_args(num_perturbations, beta, epsilon, chunk_size)
  if evaluation not in EVALUATIONS:
    raise ValueError(f"evaluation must be one of {', '.join(map(repr, EVALUATIONS))}; "
                     f"got {evaluation!r}")
  if g_hat_norm not in G_HAT_NORMS:
    raise ValueError(f"g_hat_norm must be one of {', '.join(map(repr, G_HAT_NORMS))}; "
                     f"got {g_hat_norm!r}")
  noise_fn = perturbations.get_noise(noise)
  key0 = _key_data(key)
  n = int(num_perturbations)
  chunk, num_chunks = _chunking(n, chunk_size)

  def init_fn(params):
    del params
    return ZerothOrderState(count=jnp.zeros([], jnp.int32), key=key0)

  def update_fn(updates, state, params=None, *, value_fn, value=None, grad=None,
                **extra_args):
    del value, grad  # consumed by optax line searches; accepted so chains can share them
    if params is None:
      raise ValueError("fogzo/nspsa need params: call update(updates, state, params, "
                       "value_fn=..., ...)")
    leaves_p, treedef = jax.tree.flatten(params)
    leaves_g = _leaves_like(updates, treedef, "updates")
    mask_tree = mask(params) if callable(mask) else mask
    perturbed = [True] * len(leaves_p) if mask_tree is None else [
        bool(m) for m in _leaves_like(mask_tree, treedef, "mask")]
    eps_tree = epsilon(params) if callable(epsilon) else epsilon
    leaves_eps = _leaves_like(eps_tree, treedef, "epsilon")
    idx = [i for i, on in enumerate(perturbed) if on]  # static: which leaves are perturbed
    theta = [leaves_p[i] for i in idx]
    eps = [jnp.asarray(leaves_eps[i], jnp.float32) for i in idx]
    for i, e in zip(idx, eps):
      try:
        fits = jnp.broadcast_shapes(e.shape, leaves_p[i].shape) == leaves_p[i].shape
      except ValueError:
        fits = False
      if not fits:
        raise ValueError(f"epsilon leaf {i} has shape {e.shape}, which does not broadcast to its "
                         f"parameter's shape {leaves_p[i].shape}")

    # Unit STE direction ĝ = g/‖g‖ over the perturbed leaves (0 when g = 0: no NaN).
    g32 = [leaves_g[i].astype(jnp.float32) for i in idx]
    if g_hat_norm == "tensor":  # ĝ_t = g_t/‖g_t‖ for each perturbed leaf t
      g_hat = [x * _inverse(jnp.sqrt(jnp.sum(x * x))) for x in g32]
    else:
      inv_norm = _inverse(jnp.sqrt(sum(jnp.sum(x * x) for x in g32)))
      if g_hat_norm == "rms":  # ‖ĝ‖ = √d: per-element RMS 1, the scale of u
        inv_norm = inv_norm * math.sqrt(sum(x.size for x in g32))
      g_hat = [x * inv_norm for x in g32]
    b = jnp.clip(jnp.asarray(beta(state.count) if callable(beta) else beta, jnp.float32), 0, 1)
    sqrt_b, sqrt_1mb = (jnp.sqrt(b), jnp.sqrt(1.0 - b)) if use_ste_direction else (0.0, 1.0)

    key, sub = jax.random.split(jax.random.wrap_key_data(state.key))

    def direction(i):
      """v_i (float32, perturbed leaves only) from its own key fold_in(sub, i)."""
      k_s, k_u = jax.random.split(jax.random.fold_in(sub, i))
      keys = jax.random.split(k_u, len(theta))
      u = [noise_fn(k, x.shape, jnp.float32) for k, x in zip(keys, theta)]
      if not use_ste_direction:
        return u
      s = jax.random.rademacher(k_s, (), jnp.float32)
      return [sqrt_b * s * gh + sqrt_1mb * ui for gh, ui in zip(g_hat, u)]

    def value_at(t):
      full = list(leaves_p)
      for i, x in zip(idx, t):
        full[i] = x
      return jnp.asarray(value_fn(jax.tree.unflatten(treedef, full), **extra_args),
                         jnp.float32)

    def half_difference(v):
      """[f(θ + ε⊙v) − f(θ − ε⊙v)] / 2, the ± pair evaluated as one vmapped batch."""
      def at(sign):
        return value_at([x + (sign * e * vi).astype(x.dtype) for x, e, vi in zip(theta, eps, v)])
      if evaluation == "sequential":
        f_plus, f_minus = at(1.0), at(-1.0)
      else:
        f_plus, f_minus = jax.vmap(at)(jnp.array([1.0, -1.0], jnp.float32))
      return 0.5 * (f_plus - f_minus)

    def chunk_sum(c):
      """Σ over the perturbations of chunk c of half_difference(v_i) · v_i ⊘ ε."""
      i = c * chunk + jnp.arange(chunk)
      v = jax.vmap(direction)(i)
      per_perturbation = jax.vmap if evaluation == "vmap" else (
          lambda f: lambda v: jax.lax.map(f, v))
      d = per_perturbation(half_difference)(v) * (i < n)  # padded perturbations count 0
      return [jnp.tensordot(d, vi, axes=1) / e for vi, e in zip(v, eps)]

    if num_chunks == 1:
      total = chunk_sum(0)
    else:
      zeros = [jnp.zeros(x.shape, jnp.float32) for x in theta]
      total, _ = jax.lax.scan(lambda acc, c: ([a + s for a, s in zip(acc, chunk_sum(c))], None),
                              zeros, jnp.arange(num_chunks))

    out = list(leaves_g)
    for i, t in zip(idx, total):
      out[i] = (t / n).astype(leaves_g[i].dtype)
    new_state = ZerothOrderState(count=optax.safe_increment(state.count),
                                 key=jax.random.key_data(key))
    return jax.tree.unflatten(treedef, out), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def fogzo(num_perturbations: int = 1, beta: Beta = 1.0, epsilon: Epsilon = 1e-3,
          noise: Union[str, perturbations.NoiseFn] = "uniform", key=0,
          chunk_size: Optional[int] = None, mask: Any = None, g_hat_norm: str = "unit",
          evaluation: str = "vmap") -> optax.GradientTransformationExtraArgs:
  """First-Order-Guided Zeroth-Order gradient estimate (Algorithm 1 of the paper).

  ``update(updates, state, params, *, value_fn, **extra_args)`` takes the STE gradient g as
  ``updates`` and returns G (module docstring), with ``value_fn(params, **extra_args)`` the
  scalar loss. Costs 2n forward passes of ``value_fn`` on top of the caller's forward+backward.

  Args:
    num_perturbations: n ≥ 1, the number of random directions v_i.
    beta: β ∈ [0, 1], or an optax schedule ``step -> β`` (e.g. ``fz.linear_beta``). β = 1 is a
      finite-difference line search along ±ĝ; β = 0 is n-SPSA.
    epsilon: ε > 0: a float, a pytree of per-leaf values (scalars, or arrays broadcastable to
      the leaf, e.g. per channel) with the structure of params, or a callable
      ``params -> pytree`` evaluated at every update (LSQ: ε = α·ε̄ follows the learned α).
    noise: the law of u: "uniform" | "rademacher" | "gaussian" | "logistic" | "triangular" (all
      zero mean, unit variance) or a callable ``(key, shape, dtype) -> array``.
    key: int seed or ``jax.random`` key; the state carries it, so the same key gives the same G.
    chunk_size: perturbations vmapped at once; ``None`` means all n. Capped at ``MAX_CHUNK``
      (2048 pairs) regardless, to keep clear of an XLA:CPU miscompile of vmaps wider than 8192.
      Chunked and unchunked give the same G (to float rounding) for the same key.
    mask: optax-style mask, a pytree of Python bools with the structure of params or a callable
      ``params -> mask``. Only ``True`` leaves are perturbed and enter ‖g‖; ``False`` leaves get
      their incoming update unchanged (e.g. learned scales keep their ordinary gradient).
    g_hat_norm: "unit" (default): ĝ = g/‖g‖, so E[vvᵀ] = βĝĝᵀ + (1−β)I. "rms": ĝ = √d·g/‖g‖
      (d = number of perturbed elements), the same per-element scale as u, so the ĝ part moves
      each weight by ~ε as the noise does; an alternative reading of the paper, offered for
      comparison (see docs/results/mnist.md): with "unit" and large d the noise part dominates
      ‖v‖ even at β = 0.999. "tensor": each perturbed leaf's ĝ_t = g_t/‖g_t‖ (‖ĝ‖² = number of
      perturbed leaves), the normalisation a per-parameter PyTorch loop would give (a leaf of
      an nn.scan model stacks all its layers' copies).
    evaluation: "vmap" (default): the ± pair and the perturbations of a chunk in one batched
      call; "sequential": one forward after the other (same G; faster for convolutions on
      XLA:CPU, where a vmap over per-perturbation weights becomes a grouped convolution).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state ``FogzoState(count, key)``.

  References:
    Yang & Aamodt, "First-Order-Guided Zeroth-Order Gradient Descent for Quantization-Aware
    Training", NeurIPS 2025, arXiv:2510.23926.
  """
  return _zeroth_order(num_perturbations, beta, epsilon, noise, key, chunk_size, mask,
                       use_ste_direction=True, g_hat_norm=g_hat_norm, evaluation=evaluation)


def nspsa(num_perturbations: int = 1, epsilon: Epsilon = 1e-3,
          noise: Union[str, perturbations.NoiseFn] = "uniform", key=0,
          chunk_size: Optional[int] = None, mask: Any = None, evaluation: str = "vmap"
          ) -> optax.GradientTransformationExtraArgs:
  """n-SPSA: G = (1/n) Σ_i [f(θ+ε⊙u_i) − f(θ−ε⊙u_i)] / 2 · u_i ⊘ ε, unbiased for ∇ of the
  smoothed loss E_u[f(θ + ε⊙u)] (exactly ∇f on a quadratic).

  Same arguments and update signature as ``fogzo`` without ``beta``; the incoming updates of the
  perturbed leaves are ignored (pass zeros when there is no STE gradient), those of masked-out
  leaves pass through unchanged. Costs 2n forward passes.
  """
  return _zeroth_order(num_perturbations, 0.0, epsilon, noise, key, chunk_size, mask,
                       use_ste_direction=False, evaluation=evaluation)
