"""FOGZO and n-SPSA as optax gradient transformations.

FOGZO (Yang & Aamodt, "Improving the Straight-Through Estimator with Zeroth-Order Information",
NeurIPS 2025, arXiv:2510.23926, Algorithm 1) turns the biased STE gradient g into a less biased
estimate G of the gradient of the smoothed loss, at the cost of 2n extra forward passes::

  ĝ   = g / ‖g‖                                   (global norm over the perturbed elements)
  v_i = √β · s_i · ĝ + √(1−β) · u_i               s_i = ±1 (Rademacher), u_i ~ p(u) i.i.d.
  G   = (1/n) Σ_i [f(θ + ε⊙v_i) − f(θ − ε⊙v_i)] / 2 · v_i ⊘ ε

For a scalar ε this is the paper's (f(θ+εv) − f(θ−εv)) / (2ε) · v exactly; a per-leaf (or
per-element) ε divides each element's share by its own ε, which keeps E[G] = ∇f for the noise
part. On a quadratic, where central differences are exact, E[G] = β ĝĝᵀ∇f + (1−β) ∇f. β = 0
without the STE direction is n-SPSA, the unbiased zeroth-order baseline (``nspsa``); both share
one code path here.

Options that depart from the paper's text are marked *ours* in the docstrings (``noise_share``,
``g_hat_norm`` other than "unit", ``g_hat_clip``, ``smoothed_base``, ``difference="ste_linear"``,
``skip_zero_grad``; the control ``gradient_noise`` and its ``only_zero_grad``).

Randomness: the state holds a fixed key and the step count t; step t draws from
``fold_in(key, t)`` and perturbation i from ``fold_in(fold_in(key, t), i)`` (one key per leaf
through ``optax.tree.random_like``), so an estimate is a pure function of (key, t, inputs).

Vectorisation: the 2n perturbed losses are evaluated with ``jax.vmap`` (the ± pair of each
perturbation in one batch), in chunks of at most ``MAX_CHUNK`` perturbations accumulated by
``lax.scan``. The cap holds whatever ``chunk_size`` asks for: XLA:CPU (jax 0.10.2) silently
computes wrong rows of vmaps wider than 8192 (see the project's known issues).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fogzo_jax import _inputs as inputs
from fogzo_jax import checks
from fogzo_jax import perturbations
from fogzo_jax import schedules

MAX_CHUNK = 2048
"""Most perturbations vmapped at once (each is a ± pair, so 4096 evaluations)."""

Evaluation = Literal["vmap", "sequential"]
EVALUATIONS = ("vmap", "sequential")
"""How the 2n perturbed losses are evaluated: batched with ``vmap`` (default), or one after the
other (``lax.map``; the same G): faster where a vmapped forward with per-element weights is
slow, e.g. convolutions on XLA:CPU (see docs/benchmarks.md)."""

GHatNorm = Literal["unit", "rms", "tensor"]
G_HAT_NORMS = ("unit", "rms", "tensor")
"""How ĝ is normalised: "unit" ‖ĝ‖ = 1 (the paper); "rms" ‖ĝ‖ = √d (ours); "tensor" each
perturbed leaf's part of ĝ has norm 1 (ours)."""

DIFFERENCES = ("loss", "ste_linear")
"""What multiplies each v_i: "loss", the measured half difference of the loss (the paper);
"ste_linear", the STE's linear prediction of it (ours, an ablation without zeroth-order
information)."""

Epsilon = Union[float, Any, Callable[[Any], Any]]
Schedulable = Union[float, jax.Array, optax.Schedule]


class ZerothOrderState(NamedTuple):
  """State of ``fogzo`` / ``nspsa``.

  Attributes:
    count: int32 scalar, the number of updates done (the step of the β schedule).
    key: uint32[2] raw PRNG key data (``jax.random.key_data``), fixed for the whole run; step t
      uses ``fold_in(key, t)``. Raw data, so the state checkpoints as plain arrays.
  """
  count: jax.Array
  key: jax.Array


FogzoState = ZerothOrderState
NSpsaState = ZerothOrderState


def fogzo(num_perturbations: int = 1, beta: Schedulable = 1.0, epsilon: Epsilon = 1e-3,
          noise: Union[str, perturbations.NoiseFn] = "uniform", key: Any = 0,
          chunk_size: Optional[int] = None, mask: Any = None, g_hat_norm: GHatNorm = "unit",
          evaluation: Evaluation = "vmap", noise_share: Optional[Schedulable] = None,
          g_hat_clip: Optional[float] = None, smoothed_base: bool = False,
          difference: str = "loss", skip_zero_grad: bool = False
          ) -> optax.GradientTransformationExtraArgs:
  """First-Order-Guided Zeroth-Order gradient estimate (Algorithm 1 of the paper).

  ``update(updates, state, params, *, value_fn, **extra_args)`` takes the STE gradient g as
  ``updates`` and returns G (module docstring), with ``value_fn(params, **extra_args)`` the
  scalar loss. Each extra keyword argument goes to those of ``value_fn`` and the ``epsilon`` /
  ``mask`` callables whose signatures name it (``value`` and ``grad``, which optax's line
  searches take, are accepted and ignored); one that none of them takes is an error. Costs 2n forward passes
  of ``value_fn`` on top of the caller's forward and backward.

  Args:
    num_perturbations: n ≥ 1, the number of random directions v_i. It fixes array shapes, so
      with ``optax.inject_hyperparams`` list it in ``static_args``.
    beta: β ∈ [0, 1], or an optax schedule ``step -> β`` (e.g. ``fz.linear_beta``). β = 1 is a
      finite-difference line search along ±ĝ; β = 0 is n-SPSA. β is used in float32, so a
      fixed β with 0 < 1 − β < 1e-6 is refused (it would round to within 6e-8 of 1); for a
      small noise part at large d give ``noise_share``, which is exact at any d.
    epsilon: ε > 0: a float, a pytree of per-leaf values (scalars, or arrays broadcastable to
      the leaf, e.g. per channel) with the structure of params, or a callable
      ``params -> pytree`` evaluated at every update (LSQ: ε = α·ε̄ follows the learned α);
      a callable may take more keyword arguments, given to ``update`` (e.g. the quantizer
      steps of the current train state: ``epsilon=lambda params, steps: ...``).
      Non-finite or non-positive values are refused where they are concrete; where they are
      traced (under ``jit``) the update returns the incoming updates unchanged instead of NaN.
    noise: the law of u: "uniform" | "rademacher" | "gaussian" | "logistic" | "triangular" (all
      zero mean, unit variance) or a callable ``(key, shape, dtype) -> array``.
    key: int seed or ``jax.random`` key; the same key gives the same G at the same step.
    chunk_size: perturbations vmapped at once; ``None`` means all n. Capped at ``MAX_CHUNK``
      (2048 pairs) regardless. Chunked and unchunked give the same G for the same key.
    mask: optax-style mask with the structure of params (a dict, any ``Mapping`` such as a
      ``FrozenDict``, or a prefix of params), or a callable ``params -> mask`` (extra keyword
      arguments as for ``epsilon``). A leaf is a bool
      (perturb that leaf or not) or a boolean array broadcastable to the leaf (perturb those
      elements). Only selected elements are perturbed and enter ‖g‖; the others get their
      incoming update unchanged (e.g. learned scales keep their ordinary gradient). An all-False
      mask passes every update through.
    g_hat_norm: "unit" (default, the paper): ĝ = g/‖g‖, so E[vvᵀ] = βĝĝᵀ + (1−β)I. *Ours*:
      "rms": ĝ = √d·g/‖g‖ (d perturbed elements), the per-element scale of u; "tensor": each
      perturbed leaf's ĝ_t = g_t/‖g_t‖ (‖ĝ‖² = number of perturbed leaves).
    evaluation: "vmap" (default): the ± pair and the perturbations of a chunk in one batched
      call; "sequential": one forward after the other (same G; faster for convolutions on
      XLA:CPU, where a vmap over per-perturbation weights becomes a grouped convolution).
    noise_share: *ours*, instead of ``beta``: the ratio ρ = ‖√(1−β)·u‖ / ‖√β·ĝ‖ of the noise
      part to the STE part of v, a float ≥ 0 or a schedule ``step -> ρ``
      (``fz.linear_noise_share``). β then follows from ρ and the number d of perturbed
      elements at every step, β = d / (d + ρ²‖ĝ‖²) (``fz.noise_share_to_beta``), so one ρ means
      the same mixture for every model size; the paper's β_min = 0.999 is ρ ≈ 2.8 on the MNIST
      MLP but ρ ≈ 94 on LLaMA-9M. Give ``beta`` or ``noise_share``, not both.
    g_hat_clip: *ours*: clip every element of ĝ to [−c, c] after normalising. With
      ``g_hat_norm="rms"`` and c = 1/(2ε̄) (√3 for the identity STE) no weight of the ĝ part
      moves by more than half a quantization step α.
    smoothed_base: *ours*: evaluate each ± pair around θ + ε⊙u₀ (a fresh u₀ from the noise law
      per perturbation) instead of θ, so f(θ+ε(u₀+v)) − f(θ+ε(u₀−v)) is unbiased for the
      difference of the smoothed loss L_s(θ) = E_u f(θ + ε⊙u) that the STE differentiates.
      Same cost.
    difference: "loss" (default, the paper): the measured half difference of ``value_fn``.
      *Ours, an ablation*: "ste_linear" puts the STE's linear prediction of it, ⟨g, ε⊙v⟩, in its
      place, so G = (1/n) Σ ⟨g, ε⊙v_i⟩·v_i ⊘ ε keeps FOGZO's directions and noise but no
      zeroth-order information (with uniform ε and β = 1 it is g itself); no forward passes
      of ``value_fn``, which may then be left out (``update(g, state, params)``, as for any
      optax transformation). Comparing it with "loss" tells what the measured difference adds.
    skip_zero_grad: *ours*: perturb only the selected elements whose STE gradient is non-zero;
      the others keep their incoming update (0). Where a quantizer clips (fixed-scale, LSQ),
      the STE gradient of a weight outside the range is exactly 0, so without this FOGZO's noise
      part is that weight's only update, a random walk that AdamW normalises to full-size steps.
      d (and with it β from ``noise_share``) counts the remaining elements at every step.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state ``FogzoState(count, key)``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, fogzo_jax as fz
    >>> loss = lambda p, x: jnp.sum((fz.quant.round_ste(p["w"]) - x) ** 2)
    >>> params, x = {"w": jnp.array([0.2, 1.7])}, jnp.array([1.0, 1.0])
    >>> tx = fz.fogzo(num_perturbations=4, beta=0.9, epsilon=0.3, key=0)
    >>> g = jax.grad(loss)(params, x)
    >>> G, state = tx.update(g, tx.init(params), params, value_fn=loss, x=x)
    >>> G["w"].shape, int(state.count)
    ((2,), 1)

  References:
    Yang & Aamodt, "Improving the Straight-Through Estimator with Zeroth-Order Information",
    NeurIPS 2025, arXiv:2510.23926.
  """
  if noise_share is not None and (callable(beta) or (inputs.concrete(beta) and float(beta) != 1.0)):
    raise ValueError("give beta or noise_share, not both (noise_share sets β from the number of "
                     f"perturbed elements); got beta={beta!r}, noise_share={noise_share!r}")
  return _zeroth_order(num_perturbations, beta, epsilon, noise, key, chunk_size, mask,
                       use_ste_direction=True, g_hat_norm=g_hat_norm, evaluation=evaluation,
                       noise_share=noise_share, g_hat_clip=g_hat_clip,
                       smoothed_base=smoothed_base, difference=difference,
                       skip_zero_grad=skip_zero_grad)


def nspsa(num_perturbations: int = 1, epsilon: Epsilon = 1e-3,
          noise: Union[str, perturbations.NoiseFn] = "uniform", key: Any = 0,
          chunk_size: Optional[int] = None, mask: Any = None, evaluation: Evaluation = "vmap"
          ) -> optax.GradientTransformationExtraArgs:
  """n-SPSA: G = (1/n) Σ_i [f(θ+ε⊙u_i) − f(θ−ε⊙u_i)] / 2 · u_i ⊘ ε.

  Unbiased for the gradient of the smoothed loss E_u[f(θ + ε⊙u)] (exactly ∇f on a quadratic).
  Same arguments and update signature as ``fogzo`` without ``beta``; the incoming updates of the
  perturbed elements are ignored (``None`` is accepted), those of masked-out elements pass
  through unchanged. Costs 2n forward passes.

  Example:
    >>> import jax.numpy as jnp, fogzo_jax as fz
    >>> tx = fz.nspsa(num_perturbations=64, epsilon=1e-2, key=0)
    >>> params = jnp.array([1.0, -2.0])
    >>> G, _ = tx.update(None, tx.init(params), params, value_fn=lambda p: jnp.sum(p ** 2))
    >>> G.shape
    (2,)
  """
  return _zeroth_order(num_perturbations, 0.0, epsilon, noise, key, chunk_size, mask,
                       use_ste_direction=False, evaluation=evaluation)


def gradient_noise(noise_share: Schedulable, noise: Union[str, perturbations.NoiseFn] = "uniform",
                   key: Any = 0, mask: Any = None, skip_zero_grad: bool = False,
                   only_zero_grad: bool = False) -> optax.GradientTransformationExtraArgs:
  """*Ours*, a control: G = g + ρ·RMS(g)·u on the selected elements; no forward passes.

  ``fogzo(difference="ste_linear")`` gives G = ⟨g, v⟩·v (one ε), whose mean is g and whose
  noise has per-element standard deviation about β·ρ·RMS(g) once d ≫ 1 (the exact variance is in
  tests/test_estimators.py). This adds such noise directly, without FOGZO's rank-one structure:
  u is drawn i.i.d. from ``noise`` (zero mean, unit variance) and RMS(g) = ‖g‖/√d is taken over
  the d selected elements. Comparing the two tells whether that structure matters.

  Args:
    noise_share: ρ ≥ 0, or a schedule ``step -> ρ`` (e.g. ``fz.linear_noise_share``).
    noise: the law of u, as for ``fogzo``.
    key: int seed or ``jax.random`` key; step t draws from ``fold_in(key, t)``.
    mask: as for ``fogzo``; unselected elements keep their incoming update. A callable mask gets
      the keyword arguments of ``update`` that it names; the others (``value_fn``, ``batch``,
      …) are accepted and ignored, so it drops in wherever ``fogzo`` is used.
    skip_zero_grad: as for ``fogzo``: no noise where g is exactly 0; RMS(g) over the rest.
    only_zero_grad: *ours*, the complement: noise only where g is exactly 0 (with the identity
      STE, the weights past the quantizer's range, which STE does not move), of the same
      ρ·RMS(g) as without it, RMS(g) over every selected element.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state ``ZerothOrderState(count, key)``.

  Example:
    >>> import jax.numpy as jnp, fogzo_jax as fz
    >>> tx = fz.gradient_noise(0.3, key=0)
    >>> g = jnp.array([3.0, -4.0])
    >>> G, state = tx.update(g, tx.init(g), g)
    >>> G.shape, int(state.count)
    ((2,), 1)
  """
  _check_noise_share(noise_share)
  checks.boolean("skip_zero_grad", skip_zero_grad)
  checks.boolean("only_zero_grad", only_zero_grad)
  if skip_zero_grad and only_zero_grad:
    raise ValueError("skip_zero_grad and only_zero_grad exclude each other (noise nowhere); "
                     "set at most one of them")
  noise_fn = perturbations.get_noise(noise)
  init_fn = _init_with(inputs.key_data(key))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("gradient_noise needs params: call update(updates, state, params)")
    updates = inputs.like_params(updates, params, "updates")
    mask_kwargs = (inputs.accepted(mask, extra_args) or {}) if callable(mask) else {}
    new_state = state._replace(count=optax.safe_increment(state.count))
    # fogzo's selection of the perturbed elements (no ε here: 1.0 is never used)
    p = inputs.perturbed_parts(params, updates, mask, 1.0, mask_kwargs,
                               skip_zero_grad=skip_zero_grad)
    if p is None:
      return updates, new_state
    sel = p.selection
    rho = noise_share(state.count) if callable(noise_share) else noise_share
    scale = jnp.asarray(rho, jnp.float32) * optax.tree.norm(p.grads) / jnp.sqrt(
        jnp.maximum(p.size, 1.0))  # a traced all-False mask: no noise, not NaN
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.count)
    u = optax.tree.random_like(step_key, p.grads, sampler=noise_fn, dtype=jnp.float32)

    def out(x, g, ui):
      if x is None:
        return g
      if only_zero_grad:
        ui = jnp.where(g == 0, ui, 0.0)
      noisy = g.astype(jnp.float32) + scale * ui
      return (noisy if x is True else jnp.where(x, noisy, g.astype(jnp.float32))).astype(g.dtype)
    return jax.tree.map(out, sel, updates, u, is_leaf=inputs.is_none), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def ste_direction(grads, size, g_hat_norm: str = "unit", g_hat_clip: Optional[float] = None):
  """ĝ from the STE gradient on the perturbed elements (``g_hat_norm``, ``g_hat_clip``)."""
  if g_hat_norm == "tensor":
    g_hat = jax.tree.map(lambda x: x * _inverse(jnp.sqrt(jnp.sum(x * x))), grads)
  else:
    g_hat = optax.tree.scale(_inverse(optax.tree.norm(grads)), grads)
    if g_hat_norm == "rms":
      g_hat = optax.tree.scale(jnp.sqrt(size), g_hat)
  if g_hat_clip is not None:
    g_hat = jax.tree.map(lambda x: jnp.clip(x, -g_hat_clip, g_hat_clip), g_hat)
  return g_hat


def _check_noise_share(noise_share) -> None:
  """Refuses a concrete noise share that is not a float ≥ 0 (schedules and traced values pass)."""
  if callable(noise_share) or not inputs.concrete(noise_share):
    return
  if noise_share is None or not (np.isfinite(noise_share) and noise_share >= 0):
    raise ValueError(f"noise_share must be a float ≥ 0 or a schedule; got {noise_share!r}")


def _init_with(key_data) -> Callable:
  """``init`` of the estimators here: step count 0 and the fixed key."""
  def init_fn(params):
    del params
    return ZerothOrderState(count=jnp.zeros([], jnp.int32), key=key_data)
  return init_fn


def _inverse(norm):
  """1/norm, and 0 where norm is 0 (a zero STE gradient gives ĝ = 0, not NaN)."""
  return jnp.where(norm > 0, 1.0 / jnp.where(norm > 0, norm, 1.0), 0.0)

def _chunking(n: int, chunk_size: Optional[int]) -> tuple[int, int]:
  """(chunk, num_chunks) with chunk ≤ min(chunk_size, MAX_CHUNK) and the least padding."""
  limit = min(chunk_size or n, MAX_CHUNK, n)
  num_chunks = math.ceil(n / limit)
  return math.ceil(n / num_chunks), num_chunks


def _zeroth_order(num_perturbations, beta, epsilon, noise, key, chunk_size, mask,
                  use_ste_direction: bool, g_hat_norm: str = "unit", evaluation: str = "vmap",
                  noise_share=None, g_hat_clip=None, smoothed_base: bool = False,
                  difference: str = "loss",
                  skip_zero_grad: bool = False) -> optax.GradientTransformationExtraArgs:
  """The one code path behind ``fogzo`` (use_ste_direction=True) and ``nspsa`` (False)."""
  n = inputs.static_int(num_perturbations, "num_perturbations", 1)
  chunk, num_chunks = _chunking(n, inputs.static_int(chunk_size, "chunk_size", 1, allow_none=True))
  inputs.check_unit_interval(beta, "beta")
  inputs.check_beta_resolution(beta, "beta")
  if noise_share is not None:
    _check_noise_share(noise_share)
  if g_hat_clip is not None and not (np.isfinite(g_hat_clip) and g_hat_clip > 0):
    raise ValueError(f"g_hat_clip must be None or a float > 0; got {g_hat_clip!r}")
  if not callable(epsilon):
    inputs.check_epsilon(epsilon, "")
  checks.boolean("skip_zero_grad", skip_zero_grad)
  for name, value, allowed in (("evaluation", evaluation, EVALUATIONS),
                               ("g_hat_norm", g_hat_norm, G_HAT_NORMS),
                               ("difference", difference, DIFFERENCES)):
    if value not in allowed:
      raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
  noise_fn = perturbations.get_noise(noise)
  init_fn = _init_with(inputs.key_data(key))

  def update_fn(updates, state, params=None, *, value_fn=None, **extra_args):
    if params is None:
      raise ValueError("fogzo/nspsa need params: call update(updates, state, params, "
                       "value_fn=..., ...)")
    if value_fn is None:
      if difference == "loss":
        raise TypeError("fogzo/nspsa update needs value_fn=(params, **extra_args) -> scalar "
                        "loss (only difference='ste_linear' runs without it)")
      value_fn = lambda p: None  # never called: extra arguments go to the ε / mask callables
    masked_node = lambda x: isinstance(x, optax.MaskedNode)
    if any(map(masked_node, jax.tree.leaves(params, is_leaf=masked_node))):
      raise ValueError("fogzo/nspsa got params with optax.MaskedNode leaves (inside "
                       "optax.masked): the loss needs every parameter. Use fz.fogzo(mask=...) "
                       "instead of optax.masked(fz.fogzo(...), mask)")
    kwargs, (eps_kwargs, mask_kwargs) = inputs.route_kwargs(value_fn, (epsilon, mask), extra_args)
    if updates is None:
      updates = jax.tree.map(jnp.zeros_like, params)
    updates = inputs.like_params(updates, params, "updates")
    new_state = state._replace(count=optax.safe_increment(state.count))
    p = inputs.perturbed_parts(params, updates, mask, epsilon, mask_kwargs, eps_kwargs,
                               skip_zero_grad)
    if p is None:
      return updates, new_state  # nothing selected: a pass-through
    sel, theta, eps, eps_ok, d = p.selection, p.theta, p.epsilon, p.epsilon_ok, p.size
    g_hat = ste_direction(p.grads, d, g_hat_norm, g_hat_clip)
    if not use_ste_direction:
      sqrt_b, sqrt_1mb = 0.0, 1.0
    elif noise_share is not None:
      rho = noise_share(state.count) if callable(noise_share) else noise_share
      sqrt_b, sqrt_1mb = schedules.noise_share_mix(rho, d, optax.tree.norm(g_hat))
    else:
      b = jnp.clip(jnp.asarray(beta(state.count) if callable(beta) else beta, jnp.float32), 0, 1)
      sqrt_b, sqrt_1mb = jnp.sqrt(b), jnp.sqrt(1.0 - b)
    step_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.count)

    def noise_like(k):
      u = optax.tree.random_like(k, theta, sampler=noise_fn, dtype=jnp.float32)
      return jax.tree.map(inputs.restrict, sel, u, is_leaf=inputs.is_none)

    def direction(i):
      """(v_i, base shift u₀_i or None), float32 on the selected elements, from fold_in(·, i)."""
      k = jax.random.fold_in(step_key, i)
      k_s, k_u = jax.random.split(k)
      u = noise_like(k_u)
      base = noise_like(jax.random.fold_in(k, 2)) if smoothed_base else None
      if not use_ste_direction:
        return u, base
      s = jax.random.rademacher(k_s, (), jnp.float32)
      return jax.tree.map(lambda gh, ui: sqrt_b * s * gh + sqrt_1mb * ui, g_hat, u), base

    def value_at(shift):
      """f at θ + ε⊙shift on the selected leaves."""
      moved = jax.tree.map(lambda p, e, x: p + (e * x).astype(p.dtype), theta, eps, shift)
      full = jax.tree.map(lambda s, p, m: p if s is None else m, sel, params, moved,
                          is_leaf=inputs.is_none)
      return inputs.scalar_loss(value_fn(full, **kwargs))

    def half_difference(vb):
      """[f(θ + ε⊙(u₀ + v)) − f(θ + ε⊙(u₀ − v))] / 2 (u₀ = 0 unless smoothed_base)."""
      v, base = vb
      if difference == "ste_linear":  # the STE's first-order prediction of the half difference
        return sum(jax.tree.leaves(jax.tree.map(
            lambda g, e, vi: jnp.sum(g.astype(jnp.float32) * e * vi), p.grads, eps, v)))

      def at(sign):
        shift = optax.tree.scale(sign, v)
        return value_at(shift if base is None else optax.tree.add(base, shift))
      if evaluation == "sequential":
        f_plus, f_minus = at(1.0), at(-1.0)
      else:
        f_plus, f_minus = jax.vmap(at)(jnp.array([1.0, -1.0], jnp.float32))
      return 0.5 * (f_plus - f_minus)

    def chunk_sum(c):
      """Σ over the perturbations of chunk c of half_difference(v_i) · v_i ⊘ ε."""
      i = c * chunk + jnp.arange(chunk)
      vb = jax.vmap(direction)(i)
      if evaluation == "vmap":
        diffs = jax.vmap(half_difference)(vb)
      else:
        diffs = jax.lax.map(half_difference, vb)
      diffs = diffs * (i < n)  # padded perturbations count 0
      return jax.tree.map(lambda v, e: jnp.tensordot(diffs, v, axes=1) / e, vb[0], eps)

    if num_chunks == 1:
      total = chunk_sum(0)
    else:
      total, _ = jax.lax.scan(lambda acc, c: (optax.tree.add(acc, chunk_sum(c)), None),
                              optax.tree.zeros_like(theta, dtype=jnp.float32),
                              jnp.arange(num_chunks))

    def out(s, incoming, t):
      if s is None:
        return incoming
      estimate = jnp.where(eps_ok, t / n, incoming.astype(jnp.float32))
      if s is not True:
        estimate = jnp.where(s, estimate, incoming.astype(jnp.float32))
      return estimate.astype(incoming.dtype)
    return jax.tree.map(out, sel, updates, total, is_leaf=inputs.is_none), new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
