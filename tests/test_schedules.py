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


def test_start_at_switches_from_ste_to_fogzo_at_the_right_step():
  import jax
  import jax.numpy as jnp
  params = {"w": jnp.array([1.0, -2.0, 0.5])}
  value_fn = lambda p: 0.5 * jnp.sum(3.0 * p["w"] ** 2)   # ∇ = 3w
  g_ste = {"w": jnp.array([1.0, 1.0, 1.0])}                 # biased "STE" gradient
  tx = fz.start_at(3, fz.fogzo(2, beta=1.0, epsilon=0.01, key=0))
  state = tx.init(params)
  step = jax.jit(lambda s: tx.update(g_ste, s, params, value_fn=value_fn))
  outs = []
  for _ in range(5):
    out, state = step(state)
    outs.append(np.asarray(out["w"]))
  for k in range(3):   # STE phase: the incoming update, unchanged
    np.testing.assert_array_equal(outs[k], g_ste["w"])
  ghat = np.ones(3) / np.sqrt(3)
  expected = ghat * (ghat @ (3 * np.asarray(params["w"])))  # β = 1: ĝĝᵀ∇f
  for k in (3, 4):
    np.testing.assert_allclose(outs[k], expected, rtol=1e-3, atol=1e-4)
  assert int(state.step) == 5 and int(state.inner_state.count) == 2  # inner only ran twice


def test_start_at_bad_step():
  with pytest.raises(ValueError, match="start_step"):
    fz.start_at(-1, fz.fogzo())
