"""β schedules for FOGZO.

The paper starts at β = 1 (a pure line search along the STE direction) and decays β linearly to
β_min over training, so the estimate moves from the low-variance STE direction towards the
unbiased n-SPSA estimate: β(p) = (1 − p)(1 − β_min) + β_min, p = step / transition_steps ∈ [0, 1].
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


def _check_unit(name: str, value: float) -> None:
  if not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{name} must be in [0, 1]; got {value!r}")


def linear_beta(beta_min: float, transition_steps: int,
                beta_max: float = 1.0) -> optax.Schedule:
  """β falls linearly from ``beta_max`` at step 0 to ``beta_min`` at ``transition_steps``, then stays.

  Args:
    beta_min: final β, in [0, 1].
    transition_steps: number of steps of the decay (≥ 0; 0 gives ``beta_min`` from the start).
    beta_max: initial β, in [0, 1] (the paper uses 1).

  Returns:
    An optax schedule ``step -> β`` (a thin wrapper of ``optax.linear_schedule``).
  """
  _check_unit("beta_min", beta_min)
  _check_unit("beta_max", beta_max)
  if int(transition_steps) != transition_steps or transition_steps < 0:
    raise ValueError(f"transition_steps must be an integer ≥ 0; got {transition_steps!r}")
  if transition_steps == 0:
    return optax.constant_schedule(float(beta_min))
  return optax.linear_schedule(float(beta_max), float(beta_min), int(transition_steps))


class StartAtState(NamedTuple):
  """count: int32 step counter; inner: the wrapped transformation's state."""
  count: jax.Array
  inner: Any


def start_at(start_step: int, inner: optax.GradientTransformation
             ) -> optax.GradientTransformationExtraArgs:
  """Passes updates through unchanged (plain STE) for ``start_step`` steps, then applies ``inner``.

  The paper's equal-time schedule (Table 4): STE for the first 70 % of training, FOGZO for the
  rest, e.g. ``start_at(int(0.7 * T), fz.fogzo(beta=fz.linear_beta(b, T - int(0.7 * T)), ...))``.
  ``inner``'s state (its step count, hence its β schedule, and its PRNG key) only advances once
  it is active. Under ``jit`` the switch is a ``lax.cond``: the STE phase runs no perturbed
  forwards.
  """
  if int(start_step) != start_step or start_step < 0:
    raise ValueError(f"start_step must be an integer ≥ 0; got {start_step!r}")
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return StartAtState(jnp.zeros([], jnp.int32), inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    new_updates, inner_state = jax.lax.cond(
        state.count >= start_step,
        lambda: inner.update(updates, state.inner, params, **extra_args),
        lambda: (updates, state.inner))
    return new_updates, StartAtState(optax.safe_increment(state.count), inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
