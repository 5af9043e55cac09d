import numpy as np
import pytest

import fogzo_jax as fz


def test_linear_beta_values():
  sched = fz.linear_beta(beta_min=0.9, transition_steps=100)
  np.testing.assert_allclose([sched(0), sched(50), sched(100), sched(1000)],
                             [1.0, 0.95, 0.9, 0.9], rtol=1e-6)
  sched = fz.linear_beta(beta_min=0.2, transition_steps=10, beta_max=0.6)
  np.testing.assert_allclose([sched(0), sched(5), sched(10)], [0.6, 0.4, 0.2], rtol=1e-6)
  np.testing.assert_allclose(fz.linear_beta(0.5, 0)(0), 0.5)


def test_linear_beta_matches_progress_formula():
  """β = (1 − p)(1 − β_min) + β_min with p = step / T."""
  b_min, t = 0.666, 37
  sched = fz.linear_beta(b_min, t)
  for step in range(t + 1):
    p = step / t
    np.testing.assert_allclose(sched(step), (1 - p) * (1 - b_min) + b_min, rtol=1e-6)


@pytest.mark.parametrize("kwargs, field", [
    (dict(beta_min=1.5, transition_steps=10), "beta_min"),
    (dict(beta_min=-0.5, transition_steps=10), "beta_min"),
    (dict(beta_min=0.5, transition_steps=10, beta_max=2.0), "beta_max"),
    (dict(beta_min=0.5, transition_steps=-1), "transition_steps"),
    (dict(beta_min=0.5, transition_steps=2.5), "transition_steps"),
])
def test_bad_arguments(kwargs, field):
  with pytest.raises(ValueError, match=field):
    fz.linear_beta(**kwargs)
