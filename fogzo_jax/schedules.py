"""β schedules for FOGZO, the noise share ρ, and the STE → FOGZO switch.

The paper starts at β = 1 (a pure line search along the STE direction) and decays β linearly to
β_min over training, so the estimate moves from the low-variance STE direction towards the
unbiased n-SPSA estimate: β(p) = (1 − p)(1 − β_min) + β_min, p = step / transition_steps ∈ [0, 1].

*Ours*: the noise share ρ = ‖√(1−β)·u‖ / ‖√β·ĝ‖ is the same mixture for every model size,
while a fixed β is not (the noise part's norm grows as √((1−β)·d) with the number d of perturbed
elements). ``noise_share_to_beta`` converts, ``linear_noise_share`` is the paper's linear β
decay written in ρ.
"""

from __future__ import annotations

import optax

from fogzo_jax import _inputs as inputs


def _check_unit(name: str, value: float) -> None:
  if not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{name} must be in [0, 1]; got {value!r}")


def _check_steps(transition_steps) -> None:
  if isinstance(transition_steps, bool) or int(transition_steps) != transition_steps \
      or transition_steps < 0:
    raise ValueError(f"transition_steps must be an integer ≥ 0; got {transition_steps!r}")


def linear_beta(beta_min: float, transition_steps: int,
                beta_max: float = 1.0) -> optax.Schedule:
  """β falls linearly from ``beta_max`` at step 0 to ``beta_min`` at ``transition_steps``, then stays.

  Args:
    beta_min: final β, in [0, 1].
    transition_steps: number of steps of the decay (≥ 0; 0 gives ``beta_min`` from the start).
    beta_max: initial β, in [0, 1] (the paper uses 1).

  Returns:
    An optax schedule ``step -> β`` (a thin wrapper of ``optax.linear_schedule``).

  Example:
    >>> import fogzo_jax as fz
    >>> beta = fz.linear_beta(beta_min=0.9, transition_steps=10)
    >>> [round(float(beta(t)), 3) for t in (0, 5, 10, 20)]
    [1.0, 0.95, 0.9, 0.9]
  """
  _check_unit("beta_min", beta_min)
  _check_unit("beta_max", beta_max)
  inputs.check_beta_resolution(beta_min, "beta_min")
  inputs.check_beta_resolution(beta_max, "beta_max")
  _check_steps(transition_steps)
  if transition_steps == 0:
    return optax.constant_schedule(float(beta_min))
  return optax.linear_schedule(float(beta_max), float(beta_min), int(transition_steps))


def noise_share_to_beta(noise_share, num_elements, g_hat_sq_norm=1.0):
  """β such that ‖√(1−β)·u‖ / ‖√β·ĝ‖ = ρ in expectation (*ours*).

  With d perturbed elements of unit-variance noise, E‖u‖² = d, so ρ² = (1−β)·d / (β·‖ĝ‖²) and
  β = d / (d + ρ²·‖ĝ‖²). ‖ĝ‖² is 1 for the paper's unit ĝ (then 1 − β ≈ ρ²/d), d for
  ``g_hat_norm="rms"``; ‖ĝ‖ = 0 (a zero STE gradient) gives β = 1. For reporting: in float32
  this β is exactly 1 once ρ²‖ĝ‖²/d < 3e-8, so ``fz.fogzo(noise_share=…)`` never forms it and
  takes √β and √(1−β) from ``noise_share_mix`` instead.

  Args:
    noise_share: ρ ≥ 0 (float or array).
    num_elements: d, the number of perturbed elements.
    g_hat_sq_norm: ‖ĝ‖².

  Returns:
    β in [0, 1] (same kind as the inputs: float or array).

  Example:
    >>> import fogzo_jax as fz
    >>> f"{1 - fz.noise_share_to_beta(0.09, 8_893_120):.2g}"   # LLaMA-9M, ρ = 0.09
    '9.1e-10'
  """
  return num_elements / (num_elements + noise_share ** 2 * g_hat_sq_norm)


def noise_share_mix(noise_share, num_elements, g_hat_norm=1.0):
  """(√β, √(1−β)) of ``noise_share_to_beta`` without forming 1 − β (*ours*).

  √β = √d/√(d + ρ²‖ĝ‖²), √(1−β) = ρ‖ĝ‖/√(d + ρ²‖ĝ‖²): exact in float32 at any d, where β itself
  is 1 once ρ²‖ĝ‖²/d < 3e-8 (ρ ≤ 0.3 at d = 8.9 M) and √(1 − β) would lose the noise part.
  """
  scaled = noise_share * g_hat_norm
  denom = (num_elements + scaled ** 2) ** 0.5
  return num_elements ** 0.5 / denom, scaled / denom


def linear_noise_share(noise_share: float, transition_steps: int) -> optax.Schedule:
  """ρ(t) = ρ·√(min(t, T)/T) (*ours*): the paper's linear β decay from 1, written in ρ.

  For ρ² ≪ d/‖ĝ‖², 1 − β ≈ ρ(t)²·‖ĝ‖²/d grows linearly in t, as in ``linear_beta``; at the end
  the noise part is ρ times the STE part, whatever the model size.

  Example:
    >>> import fogzo_jax as fz
    >>> rho = fz.linear_noise_share(0.4, transition_steps=100)
    >>> [round(float(rho(t)), 3) for t in (0, 25, 100, 200)]
    [0.0, 0.2, 0.4, 0.4]
  """
  if not noise_share >= 0:
    raise ValueError(f"noise_share must be a float ≥ 0; got {noise_share!r}")
  _check_steps(transition_steps)
  if transition_steps == 0 or noise_share == 0:
    return optax.constant_schedule(float(noise_share))
  fraction = optax.linear_schedule(0.0, 1.0, int(transition_steps))
  return lambda step: float(noise_share) * fraction(step) ** 0.5


StartAtState = optax.transforms.ConditionallyTransformState
"""State of ``start_at``: ``(inner_state, step)``."""


def start_at(start_step: int, inner: optax.GradientTransformation
             ) -> optax.GradientTransformationExtraArgs:
  """Passes updates through unchanged (plain STE) for ``start_step`` steps, then applies ``inner``.

  The paper's equal-time schedule (Table 4): STE for the first 70 % of training, FOGZO for the
  rest, e.g. ``start_at(int(0.7 * T), fz.fogzo(beta=fz.linear_beta(b, T - int(0.7 * T)), ...))``.
  ``inner``'s state (its step count, hence its β schedule and its noise) only advances once it
  is active. Built on ``optax.transforms.conditionally_transform``: a ``lax.cond``, so under
  ``jit`` the STE phase runs no perturbed forwards; under ``vmap`` (a batch of runs) the cond
  becomes a select and both branches are computed, with the same result.

  Example:
    >>> import jax.numpy as jnp, fogzo_jax as fz
    >>> tx = fz.start_at(1, fz.fogzo(beta=1.0, epsilon=0.1))
    >>> p, g = jnp.array([1.0]), jnp.array([2.0])
    >>> out, state = tx.update(g, tx.init(p), p, value_fn=lambda q: jnp.sum(q ** 2))
    >>> float(out[0]), int(state.step)     # step 0: the STE gradient unchanged
    (2.0, 1)
  """
  if isinstance(start_step, bool) or int(start_step) != start_step or start_step < 0:
    raise ValueError(f"start_step must be an integer ≥ 0; got {start_step!r}")
  return optax.transforms.conditionally_transform(inner, lambda step: step >= start_step)
