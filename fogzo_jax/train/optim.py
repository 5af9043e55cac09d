"""The optimizer of a training config: ``chain(estimator, AdamW)``, built from the config alone.

``make_estimator(**config.estimator, …)`` is the identity for STE, ``fz.nspsa``, ``fz.fogzo``
(optionally after an STE phase, ``fz.start_at``) or the control ``fz.gradient_noise`` (ours);
``make_optimizer(**config.optimizer, …)`` is AdamW with (warm-up +) cosine decay. The estimator
perturbs the quantized weights only, with ε = α·ε̄(ste) and the law of u from the
implicit-smoothing table. α is read from the *current* train state at every step: ``train_step``
passes the state's ``quant`` collection to ``tx.update(…, quant=state.quant)``, and the ε and mask
callables take it, so a restored or learned step is the one that is used (one source of truth,
nothing closed over at init).
"""

from __future__ import annotations

import functools
from typing import Optional, Union

import jax
import jax.numpy as jnp
import optax

import fogzo_jax as fz
from fogzo_jax import _inputs as inputs
from fogzo_jax import checks
from fogzo_jax.quant import fixed as fixed_lib
from fogzo_jax.quant import layers as quant_layers
from fogzo_jax.quant import lsq as lsq_lib

ESTIMATORS = ("ste", "fogzo", "nspsa", "gradient_noise")
"""``gradient_noise`` (ours) is a control: the STE gradient plus noise of ρ(t)·RMS(g) per element
(``fz.gradient_noise``), ρ(t) on FOGZO's schedule to ``noise_share``."""


def check_estimator_args(kind: str = "fogzo", num_perturbations: int = 1, beta_min: float = 0.999,
                         noise_share: Optional[float] = None, g_hat_norm: str = "unit",
                         g_hat_clip: Union[None, float, str] = None, smoothed_base: bool = False,
                         difference: str = "loss", skip_zero_grad: bool = False,
                         start_fraction: float = 0.0, chunk_size: Optional[int] = 1024,
                         evaluation: str = "vmap", only_zero_grad: bool = False) -> None:
  """Checks ``config.estimator`` (each message starts with the field)."""
  checks.choice("kind", kind, ESTIMATORS)
  checks.number("num_perturbations", num_perturbations, int, 1)
  checks.number("beta_min", beta_min, float, 0.0, 1.0)
  inputs.check_beta_resolution(beta_min, "beta_min")
  checks.number("noise_share", noise_share, float, 0.0, allow_none=True)
  checks.choice("g_hat_norm", g_hat_norm, fz.estimators.G_HAT_NORMS)
  if g_hat_clip != "half_step":
    try:
      checks.number("g_hat_clip", g_hat_clip, float, 0.0, low_open=True, allow_none=True)
    except ValueError:
      raise ValueError(f"g_hat_clip must be None, a number > 0 or 'half_step'; got "
                       f"{g_hat_clip!r}") from None
  checks.boolean("smoothed_base", smoothed_base)
  checks.choice("difference", difference, fz.estimators.DIFFERENCES)
  checks.boolean("skip_zero_grad", skip_zero_grad)
  checks.boolean("only_zero_grad", only_zero_grad)
  checks.number("start_fraction", start_fraction, float, 0.0, 1.0)
  checks.number("chunk_size", chunk_size, int, 1, allow_none=True)
  checks.choice("evaluation", evaluation, fz.estimators.EVALUATIONS)
  if start_fraction > 0 and kind != "fogzo":
    raise ValueError(f"start_fraction > 0 needs kind='fogzo'; got kind {kind!r}")
  if skip_zero_grad and kind not in ("fogzo", "gradient_noise"):
    raise ValueError(f"skip_zero_grad=True needs kind 'fogzo' or 'gradient_noise'; got kind "
                     f"{kind!r}")
  if only_zero_grad and kind != "gradient_noise":
    raise ValueError(f"only_zero_grad=True needs kind 'gradient_noise'; got kind {kind!r}")
  if only_zero_grad and skip_zero_grad:
    raise ValueError("only_zero_grad and skip_zero_grad exclude each other (noise nowhere); set "
                     "at most one of them")
  if kind == "gradient_noise" and noise_share is None:
    raise ValueError("noise_share must be a float ≥ 0 with kind='gradient_noise' (the noise's "
                     "share of RMS(g) at the end of training); got None")


def start_step(kind: str, start_fraction: float, total_steps: int) -> int:
  """The first FOGZO step (after the STE phase of ``start_fraction``)."""
  return int(round(start_fraction * total_steps)) if kind == "fogzo" else 0


def forward_passes(steps: int, total_steps: int, kind: str = "fogzo", num_perturbations: int = 1,
                   start_fraction: float = 0.0, difference: str = "loss", **_) -> int:
  """Forward-pass equivalents of ``steps`` steps, counting a backward as 2 (the paper's way).

  STE (and ``gradient_noise``) 3 per step (forward + backward); FOGZO 3 + 2n (its STE steps 3;
  3 with the ``difference="ste_linear"`` ablation, which evaluates no loss); n-SPSA 2n (the
  forward that n-SPSA runs only to log its loss is not counted). Takes ``**config.estimator``.
  """
  if kind == "nspsa":
    return 2 * num_perturbations * steps
  if kind in ("ste", "gradient_noise") or difference == "ste_linear":
    return 3 * steps
  ste_steps = min(steps, start_step(kind, start_fraction, total_steps))
  return 3 * steps + 2 * num_perturbations * (steps - ste_steps)


def make_estimator(kind: str = "fogzo", num_perturbations: int = 1, beta_min: float = 0.999,
                   noise_share: Optional[float] = None, g_hat_norm: str = "unit",
                   g_hat_clip: Union[None, float, str] = None, smoothed_base: bool = False,
                   difference: str = "loss", skip_zero_grad: bool = False,
                   start_fraction: float = 0.0, chunk_size: Optional[int] = 1024,
                   evaluation: str = "vmap", only_zero_grad: bool = False, *,
                   total_steps: int, key: int,
                   spec: quant_layers.QuantSpec) -> optax.GradientTransformationExtraArgs:
  """The gradient estimator of ``config.estimator`` for a model quantized per ``spec``.

  β decays linearly from 1 over the FOGZO steps, to ``beta_min`` or, with ``noise_share`` = ρ,
  to the β whose noise part is ρ times the STE part (``fz.linear_noise_share``; ours).
  ``g_hat_clip='half_step'`` is 1/(2ε̄(ste)): no weight moves more than α/2 along ĝ (ours).
  Its ``update`` needs ``quant=<the train state's quant collection>`` besides ``value_fn``.
  """
  check_estimator_args(kind, num_perturbations, beta_min, noise_share, g_hat_norm, g_hat_clip,
                       smoothed_base, difference, skip_zero_grad, start_fraction, chunk_size,
                       evaluation, only_zero_grad)
  if kind == "ste":
    return optax.identity()
  eps_bar, noise = fz.implicit_smoothing(spec.ste)
  common = dict(num_perturbations=num_perturbations, noise=noise, key=key,
                chunk_size=chunk_size, evaluation=evaluation,
                epsilon=functools.partial(quant_layers.epsilon_from_params, spec=spec),
                mask=quant_layers.quantized_mask)
  if kind == "nspsa":
    return fz.nspsa(**common)
  if kind == "gradient_noise":
    return fz.gradient_noise(fz.linear_noise_share(noise_share, total_steps), noise=noise,
                             key=key, mask=quant_layers.quantized_mask,
                             skip_zero_grad=skip_zero_grad, only_zero_grad=only_zero_grad)
  start = start_step(kind, start_fraction, total_steps)
  decay = total_steps - start
  if noise_share is None:
    mixing = dict(beta=fz.linear_beta(beta_min, decay))
  else:
    mixing = dict(noise_share=fz.linear_noise_share(noise_share, decay))
  estimator = fz.fogzo(g_hat_norm=g_hat_norm, smoothed_base=smoothed_base, difference=difference,
                       skip_zero_grad=skip_zero_grad,
                       g_hat_clip=0.5 / eps_bar if g_hat_clip == "half_step" else g_hat_clip,
                       **mixing, **common)
  return fz.start_at(start, estimator) if start > 0 else estimator


def check_optimizer_args(learning_rate: float = 0.064, weight_decay: float = 0.01,
                         warmup_steps: int = 0, step_size_lr_factor: float = 1.0,
                         eps: float = 1e-8, noise_floor_share: float = 0.0,
                         update_noise_share: float = 0.0, clip_to_range: bool = False) -> None:
  """Checks ``config.optimizer``."""
  checks.number("learning_rate", learning_rate, float, 0.0, low_open=True)
  checks.number("weight_decay", weight_decay, float, 0.0)
  checks.number("warmup_steps", warmup_steps, int, 0)
  checks.number("step_size_lr_factor", step_size_lr_factor, float, 0.0)
  checks.number("eps", eps, float, 0.0, low_open=True)
  checks.number("noise_floor_share", noise_floor_share, float, 0.0)
  checks.number("update_noise_share", update_noise_share, float, 0.0)
  checks.boolean("clip_to_range", clip_to_range)


def scale_by_adam_noise_floor(noise_share: optax.ScalarOrSchedule, b1: float = 0.9,
                              b2: float = 0.999, eps: float = 1e-8
                              ) -> optax.GradientTransformation:
  """*Ours*, a probe: Adam whose second moment also averages (ρ(t)·RMS(g))², with no noise.

  That term is what the gradient-noise control (``fz.gradient_noise``: g + ρ(t)·RMS(g)·u, u of
  zero mean and unit variance) adds to E[g²], so this keeps the control's damping of Adam's steps
  and drops its noise. RMS(g) is taken over every parameter (the control takes it over the
  quantized ones: the same on a model whose parameters are all quantized, as the MNIST MLP's).
  The first moment, the bias corrections and ε are ``optax.scale_by_adam``'s; its state is
  optax's ``ScaleByAdamState``.
  """
  schedule = noise_share if callable(noise_share) else optax.constant_schedule(noise_share)

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

  def update(updates, state, params=None):
    del params
    leaves = jax.tree.leaves(updates)
    mean_square = sum(jnp.sum(jnp.square(g)) for g in leaves) / sum(g.size for g in leaves)
    floor = jnp.square(schedule(state.count)) * mean_square
    mu = optax.tree_utils.tree_update_moment(updates, state.mu, b1, 1)
    nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * (jnp.square(g) + floor), updates, state.nu)
    count = optax.safe_increment(state.count)
    mu_hat = optax.tree_utils.tree_bias_correction(mu, b1, count)
    nu_hat = optax.tree_utils.tree_bias_correction(nu, b2, count)
    out = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu_hat, nu_hat)
    return out, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init, update)


def on_quantized_weights(inner: optax.GradientTransformation
                         ) -> optax.GradientTransformationExtraArgs:
  """``inner``'s update on the quantized weights, the incoming update elsewhere (*ours*).

  The quantized weights are read from ``update(…, quant=<the train state's quant collection>)``
  (``quant_layers.quantized_mask``), as the estimators read them; without ``quant`` every
  parameter takes ``inner``'s update. ``inner`` sees the whole tree, so its state (and the noise
  it draws) does not depend on the mask.
  """
  def update(updates, state, params=None, *, quant=None, **extra_args):
    del extra_args
    new, state = inner.update(updates, state, params)
    if quant is None:
      return new, state
    mask = quant_layers.quantized_mask(params, quant)
    return jax.tree.map(lambda m, n, u: n if m else u, mask, new, updates), state

  return optax.GradientTransformationExtraArgs(inner.init, update)


_EDGE_MARGIN = 1e-3  # clip_to_quantizer_range: steps inside the range's edge


def _clip_levels(spec: quant_layers.QuantSpec) -> tuple[int, int]:
  """(lo, hi): the lowest and highest integer level of ``spec``'s weight quantizer."""
  if spec.kind == "lsq":
    q_n, q_p = lsq_lib.lsq_levels(spec.bits)
    return -q_n, q_p
  return fixed_lib.levels(spec.bits)


CLIP_KINDS = ("fixed", "lsq")
"""The quantizers ``clip_to_quantizer_range`` takes: a range [lo·α, hi·α] that does not depend on
the weight itself (QuEST's does: its step is the weights' RMS)."""


def clip_to_quantizer_range(spec: quant_layers.QuantSpec
                            ) -> optax.GradientTransformationExtraArgs:
  """*Ours* (BinaryConnect's clip of the latent weights, Courbariaux et al. 2015): the update
  that keeps each quantized weight w in [lo·α, hi·α], the range of its quantizer (fixed scale:
  the frozen α; LSQ: the learned |s| after this same update).

  Past that range the identity STE's (and LSQ's) gradient of w is exactly 0, so AdamW stops
  moving a weight that got there (amendments 79-82 of docs/results/where_fogzo_helps.md).
  Clipped to the range, it has the same quantized value and keeps a gradient. The returned
  update is ``u`` where w + u stays in the range and everywhere but the quantized weights (α from
  ``update(…, quant=…)`` and, for LSQ, from the updated params); elsewhere it moves w to the
  range's edge, a thousandth of a step inside it (``_EDGE_MARGIN``), so that the rounding of
  w + (edge − w) cannot leave w just past the edge, where the gradient is 0 again. With LSQ the
  clipped weights no longer push s up (their ∂x̂/∂s is the rounding error, not Q_P), and in the
  one test we ran that hurt: on the small LLaMA with LSQ it lost to STE by 1.65 perplexity on
  every seed, with two of seven learned steps 12× and 48× smaller than STE's (amendment 89);
  with the steps frozen (``step_size_lr_factor=0``) it beat STE on every seed (amendment 94).
  Use it where the step is fixed. Chain it last.
  """
  if spec.kind not in CLIP_KINDS:
    raise ValueError(f"clip_to_range=True needs quant kind 'fixed' or 'lsq' (a range that does "
                     f"not depend on the weight); got {spec.kind!r}")
  lo, hi = _clip_levels(spec)

  def update(updates, state, params=None, *, quant=None, **extra_args):
    del extra_args
    if params is None or quant is None:
      raise ValueError("clip_to_range needs update(…, params, quant=<the quant collection>)")
    # α after this update: the frozen one (fixed) or LSQ's updated step (|s + Δs|)
    steps = quant_layers.weight_step_sizes(optax.apply_updates(params, updates), quant, spec)
    def clip(u, w, a):  # u itself where w + u stays inside (bit-exact AdamW there)
      if a is None:
        return u
      target = w + u
      inside = (target >= lo * a) & (target <= hi * a)
      edge = jnp.clip(target, (lo + _EDGE_MARGIN) * a, (hi - _EDGE_MARGIN) * a)
      return jnp.where(inside, u, edge - w)

    new = jax.tree.map(clip, updates, params, steps, is_leaf=lambda x: x is None)
    return new, state

  return optax.GradientTransformationExtraArgs(lambda params: optax.EmptyState(), update)


def make_optimizer(learning_rate: float = 0.064, weight_decay: float = 0.01,
                   warmup_steps: int = 0, step_size_lr_factor: float = 1.0,
                   eps: float = 1e-8, noise_floor_share: float = 0.0,
                   update_noise_share: float = 0.0, clip_to_range: bool = False, *,
                   total_steps: int, key: int = 0,
                   spec: Optional[quant_layers.QuantSpec] = None
                   ) -> optax.GradientTransformationExtraArgs:
  """AdamW with a cosine decay to 0 over ``total_steps`` after a linear warm-up (at most half).

  ``step_size_lr_factor`` (ours; 1.0, the paper's recipe, adds nothing): LSQ's learned step
  sizes (``quant.layers.step_size_mask``) take this factor times AdamW's update (its decay
  included), i.e. train at that fraction of the rate; 0 freezes them at LSQ's initial step. Adam
  normalises each update, so LSQ's gradient scale does not slow them down (docs/results/lsq.md).
  ``eps`` is AdamW's ε (optax's default 1e-8), added to √v̂ in each coordinate's denominator.
  ``noise_floor_share`` = ρ > 0 (ours, a probe; 0 is plain AdamW) adds (ρ(t)·RMS(g))² to Adam's
  second moment, ρ(t) on the gradient-noise control's schedule (``fz.linear_noise_share`` over
  ``total_steps``): that control's damping without its noise (``scale_by_adam_noise_floor``).
  ``update_noise_share`` = η > 0 (ours, a probe; 0 adds nothing) adds η(t)·z, z ~ N(0, 1) per
  element, η(t) on the same schedule, to Adam's normalised update before the weight decay and
  the rate: a random walk of lr(t)·η(t) per step and weight that leaves Adam's moments alone
  (``optax.add_noise`` with its variance η(t)² injected, ``key`` its seed), on the quantized
  weights when ``update`` gets ``quant=`` (the training loop passes it; ``on_quantized_weights``).
  ``clip_to_range`` (ours; needs ``spec`` of kind 'fixed' or 'lsq') ends the chain with
  ``clip_to_quantizer_range``: the quantized weights stay in their quantizer's range, where the
  STE gradient is not 0.
  """
  check_optimizer_args(learning_rate, weight_decay, warmup_steps, step_size_lr_factor, eps,
                       noise_floor_share, update_noise_share, clip_to_range)
  if clip_to_range and spec is None:
    raise ValueError("clip_to_range=True needs spec= (the model's QuantSpec)")
  warmup = min(warmup_steps, total_steps // 2)  # short runs: at most half is warm-up
  if warmup:
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, total_steps)
  else:
    schedule = optax.cosine_decay_schedule(learning_rate, total_steps)
  if noise_floor_share == 0 and update_noise_share == 0:
    tx = optax.adamw(schedule, eps=eps, weight_decay=weight_decay)
  else:  # optax.adamw's chain, its second moment floored and/or noise added after it
    if noise_floor_share > 0:
      adam = scale_by_adam_noise_floor(fz.linear_noise_share(noise_floor_share, total_steps),
                                       eps=eps)
    else:
      adam = optax.scale_by_adam(eps=eps)
    walk = optax.identity()
    if update_noise_share > 0:
      share = fz.linear_noise_share(update_noise_share, total_steps)
      noise = optax.inject_hyperparams(optax.add_noise, static_args=("key",))
      walk = on_quantized_weights(noise(eta=lambda step: share(step) ** 2, gamma=0.0, key=key))
    tx = optax.chain(adam, walk, optax.add_decayed_weights(weight_decay),
                     optax.scale_by_learning_rate(schedule))
  if step_size_lr_factor != 1.0:
    tx = optax.chain(tx, optax.masked(optax.scale(step_size_lr_factor),
                                          quant_layers.step_size_mask))
  if clip_to_range:
    tx = optax.chain(tx, clip_to_quantizer_range(spec))
  return tx
