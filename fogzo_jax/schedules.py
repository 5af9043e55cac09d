"""β schedules for FOGZO.

The paper starts at β = 1 (a pure line search along the STE direction) and decays β linearly to
β_min over training, so the estimate moves from the low-variance STE direction towards the
unbiased n-SPSA estimate: β(p) = (1 − p)(1 − β_min) + β_min, p = step / transition_steps ∈ [0, 1].
"""

from __future__ import annotations

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
