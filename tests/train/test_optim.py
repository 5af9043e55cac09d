"""The training optimizer (``train.optim.make_optimizer``): the step-size rate factor (ours)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fogzo_jax as fz

from fogzo_jax.quant import layers as quant_layers
from fogzo_jax.train import config as config_lib
from fogzo_jax.train import optim


def _params():
  keys = jax.random.split(jax.random.key(0), 4)
  return {"w1": {"kernel": jax.random.normal(keys[0], (8, 4)),
                 "kernel_scale": jnp.full((1, 4), 0.05)},
          "norm": {"scale": jax.random.normal(keys[1], (4,))},  # RMSNorm's: not a step size
          "wq": {"kernel": jax.random.normal(keys[2], (4, 4)), "input_scale": jnp.array(0.3)}}


def _updates(factor, steps=3):
  params = _params()
  grads = jax.tree.map(lambda p: jnp.sin(3.0 * p) + 0.1, params)
  tx = optim.make_optimizer(learning_rate=1e-2, weight_decay=0.1, warmup_steps=0,
                            step_size_lr_factor=factor, total_steps=10)
  state, out = tx.init(params), []
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    out.append(updates)
  return out


def test_step_sizes_are_the_leaves_named_scale_after_an_underscore():
  mask = quant_layers.step_size_mask(_params())
  assert mask == {"w1": {"kernel": False, "kernel_scale": True}, "norm": {"scale": False},
                  "wq": {"kernel": False, "input_scale": True}}


@pytest.mark.parametrize("factor", [0.1, 0.0])
def test_step_sizes_move_at_the_factor_times_the_update_and_nothing_else_changes(factor):
  base, scaled = _updates(1.0), _updates(factor)
  mask = jax.tree.leaves(quant_layers.step_size_mask(_params()))
  # first step, same parameters and state: the step sizes' update is exactly × factor
  for m, x, y in zip(mask, jax.tree.leaves(base[0]), jax.tree.leaves(scaled[0])):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x) * (factor if m else 1.0), rtol=1e-6)
    assert not m or np.any(np.asarray(x) != 0)
  # every step: the other parameters' updates do not depend on the factor
  for b, s in zip(base, scaled):
    for m, x, y in zip(mask, jax.tree.leaves(b), jax.tree.leaves(s)):
      if not m:
        np.testing.assert_array_equal(np.asarray(y), np.asarray(x))


def test_factor_one_is_the_papers_adamw_unchanged():
  tx = optim.make_optimizer(learning_rate=1e-2, total_steps=10)
  state = tx.init(_params())
  assert isinstance(state, tuple) and len(state) == 3  # adamw's chain: no extra scale stage


def test_a_negative_factor_is_refused_naming_the_field():
  config = config_lib.default_config()
  config.optimizer.step_size_lr_factor = -0.5
  with pytest.raises(config_lib.ConfigError, match="step_size_lr_factor"):
    config_lib.validate(config)


def test_eps_is_adams_denominator_term():
  """``eps`` reaches AdamW: with one coordinate's gradient far below ε the first update shrinks by
  |g|/(|g| + ε) against the default, and a gradient far above ε moves at the rate either way."""
  params = {"w": jnp.zeros((2,))}
  grads = {"w": jnp.array([1e-4, 10.0])}
  first = {}
  for eps in (1e-8, 1e-2):
    tx = optim.make_optimizer(learning_rate=1e-2, weight_decay=0.0, eps=eps, total_steps=10)
    first[eps], _ = tx.update(grads, tx.init(params), params)
  small, large = (np.asarray(first[e]["w"]) for e in (1e-8, 1e-2))
  np.testing.assert_allclose(small, [-1e-2, -1e-2], rtol=1e-3)
  np.testing.assert_allclose(large, [-1e-2 * 1e-4 / (1e-4 + 1e-2), -1e-2 * 10 / (10 + 1e-2)],
                             rtol=1e-3)


@pytest.mark.parametrize("field, value", [
    ("eps", 0.0), ("eps", -1e-8), ("eps", float("nan")),
    ("update_noise_share", -0.1), ("update_noise_share", float("nan"))])
def test_a_bad_optimizer_value_is_refused_naming_the_field(field, value):
  """eps must be > 0; update_noise_share ≥ 0 (both finite)."""
  config = config_lib.default_config()
  config.optimizer[field] = value
  with pytest.raises(config_lib.ConfigError, match=f"optimizer.{field}"):
    config_lib.validate(config)


def test_a_run_recorded_before_eps_existed_counts_as_the_default():
  """Runs made before ``optimizer.eps`` existed were at optax's 1e-8: a sweep reuses them."""
  new = config_lib.default_config().to_dict()
  old = {**new, "optimizer": {k: v for k, v in new["optimizer"].items() if k != "eps"}}
  assert config_lib.incompatible_fields(old, new) == []
  changed = {**new, "optimizer": {**new["optimizer"], "eps": 1e-3}}
  assert config_lib.incompatible_fields(old, changed) == ["optimizer.eps"]


def test_noise_floor_adds_the_share_times_the_mean_square_to_adams_second_moment():
  """One step of ``scale_by_adam_noise_floor`` at a constant ρ: ν = (1 − b2)·(g² + ρ²·mean(g²)),
  the update is the bias-corrected m / (√ν̂ + ε), and μ is Adam's."""
  g = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([[0.5], [4.0]])}
  mean_square = (1 + 4 + 0.25 + 16) / 4
  tx = optim.scale_by_adam_noise_floor(0.5, eps=1e-8)
  out, state = tx.update(g, tx.init(g))
  adam_out, adam_state = optax.scale_by_adam(eps=1e-8).update(g, optax.scale_by_adam().init(g))
  for k in g:
    np.testing.assert_allclose(state.nu[k], 0.001 * (g[k] ** 2 + 0.25 * mean_square), rtol=1e-6)
    np.testing.assert_allclose(state.mu[k], adam_state.mu[k], rtol=1e-6)
    np.testing.assert_allclose(out[k], g[k] / np.sqrt(g[k] ** 2 + 0.25 * mean_square), rtol=1e-5)
    assert np.all(np.abs(out[k]) < np.abs(adam_out[k]))  # damped
  assert int(state.count) == 1


def test_noise_floor_is_the_gradient_noise_controls_expected_second_moment():
  """Adam's ν after one step of the gradient-noise control (g + ρ·RMS(g)·u), averaged over many
  draws of u, equals the floor's ν (no noise), within 5 standard errors of that average."""
  rho, draws = 0.7, 4000
  g = jnp.array([0.05, -1.0, 2.0, 0.0, 3.0])
  control = fz.gradient_noise(rho, key=0)

  def nu_of(key):
    noisy, _ = control.update(g, control.init(g)._replace(key=key), g)
    _, state = optax.scale_by_adam().update(noisy, optax.scale_by_adam().init(g))
    return state.nu

  nus = jax.vmap(nu_of)(jax.random.split(jax.random.PRNGKey(1), draws))  # the state's raw keys
  floor = optim.scale_by_adam_noise_floor(rho)
  _, state = floor.update(g, floor.init(g))
  mean, sem = np.mean(nus, axis=0), np.std(nus, axis=0) / np.sqrt(draws)
  assert np.all(np.abs(mean - np.asarray(state.nu)) < 5 * sem + 1e-9)
  assert np.all(sem < 0.05 * np.asarray(state.nu))  # the test can tell a wrong floor apart


def test_noise_floor_share_zero_is_adamw_and_a_negative_one_is_refused():
  tx = optim.make_optimizer(learning_rate=1e-2, noise_floor_share=0.0, total_steps=10)
  assert len(tx.init(_params())) == 3  # optax.adamw's own chain
  floored = optim.make_optimizer(learning_rate=1e-2, noise_floor_share=0.3, total_steps=10)
  assert isinstance(floored.init(_params())[0], optax.ScaleByAdamState)
  config = config_lib.default_config()
  config.optimizer.noise_floor_share = -0.1
  with pytest.raises(config_lib.ConfigError, match="noise_floor_share"):
    config_lib.validate(config)


def _walk_steps(share, steps, total_steps=20, key=0, weight_decay=0.0):
  """Updates of ``make_optimizer`` with ``update_noise_share`` and of plain AdamW, same grads."""
  params = {"w": jnp.linspace(-1.0, 1.0, 4000).reshape(40, 100)}
  grads = jax.tree.map(lambda p: jnp.sin(3.0 * p) + 0.1, params)
  kwargs = dict(learning_rate=1e-2, weight_decay=weight_decay, total_steps=total_steps)
  walk = optim.make_optimizer(update_noise_share=share, key=key, **kwargs)
  adamw = optim.make_optimizer(**kwargs)
  ws, As = walk.init(params), adamw.init(params)
  out = []
  for _ in range(steps):
    u, ws = walk.update(grads, ws, params)
    v, As = adamw.update(grads, As, params)
    out.append((np.asarray(u["w"]), np.asarray(v["w"])))
  return out


def test_update_noise_is_gaussian_of_the_scheduled_share_times_the_rate_and_adam_is_untouched():
  """Per step t the walk's update minus AdamW's (same gradients) is −lr(t)·η(t)·z: over 4,000
  elements its mean is 0 and its standard deviation lr(t)·η(t) (tolerances: 5 standard errors
  of a normal sample's mean and standard deviation). At t = 0 η(0) = 0, so the first update is
  AdamW's exactly. Noise that entered Adam's moments would add earlier steps' noise to the
  difference and fail the standard deviation check."""
  total, eta = 20, 0.5
  lr = optax.cosine_decay_schedule(1e-2, total)
  share = fz.linear_noise_share(eta, total)
  steps = _walk_steps(eta, 12, total)
  np.testing.assert_array_equal(*steps[0])
  n = steps[0][0].size
  for t in (3, 8, 11):
    diff = (steps[t][0] - steps[t][1]).ravel()
    sigma = float(lr(t)) * float(share(t))
    assert abs(np.mean(diff)) < 5 * sigma / np.sqrt(n)
    assert abs(np.std(diff) / sigma - 1) < 5 / np.sqrt(2 * n)


def test_update_noise_depends_on_the_key_and_zero_share_is_adamw():
  a, b = _walk_steps(0.3, 4, key=0), _walk_steps(0.3, 4, key=1)
  assert not np.allclose(a[3][0], b[3][0])
  np.testing.assert_array_equal(a[3][0], _walk_steps(0.3, 4, key=0)[3][0])
  tx = optim.make_optimizer(learning_rate=1e-2, update_noise_share=0.0, total_steps=10, key=3)
  assert len(tx.init(_params())) == 3  # optax.adamw's own chain


def test_update_noise_moves_only_the_quantized_weights_when_given_the_quant_collection():
  """With ``quant=`` (the loop passes the train state's), the walk's noise lands on the quantized
  weights only; the float ones take AdamW's update exactly. Without it, every parameter walks."""
  params = {"dense": {"kernel": jnp.linspace(-1.0, 1.0, 60).reshape(6, 10),
                      "bias": jnp.linspace(0.0, 1.0, 10)},
            "norm": {"scale": jnp.ones(10)}}
  quant = {"dense": {"kernel": jnp.array([[0.1]])}}  # the kernel is quantized, nothing else
  grads = jax.tree.map(lambda p: jnp.cos(p) + 0.2, params)
  kwargs = dict(learning_rate=1e-2, total_steps=10)
  walk = optim.make_optimizer(update_noise_share=1.0, key=0, **kwargs)
  adamw = optim.make_optimizer(**kwargs)
  ws, As = walk.init(params), adamw.init(params)
  for _ in range(4):
    with_quant, _ = walk.update(grads, ws, params, quant=quant)
    without, ws = walk.update(grads, ws, params)
    plain, As = adamw.update(grads, As, params)
  np.testing.assert_array_equal(with_quant["norm"]["scale"], plain["norm"]["scale"])
  np.testing.assert_array_equal(with_quant["dense"]["bias"], plain["dense"]["bias"])
  np.testing.assert_array_equal(with_quant["dense"]["kernel"], without["dense"]["kernel"])
  assert not np.allclose(with_quant["dense"]["kernel"], plain["dense"]["kernel"])
  assert not np.allclose(without["norm"]["scale"], plain["norm"]["scale"])


@pytest.mark.parametrize("estimator, message", [
    (dict(kind="fogzo", only_zero_grad=True), "only_zero_grad=True needs kind 'gradient_noise'"),
    (dict(kind="gradient_noise", noise_share=0.3, only_zero_grad=True, skip_zero_grad=True),
     "only_zero_grad and skip_zero_grad exclude each other")])
def test_only_zero_grad_is_refused_outside_the_control_or_with_skip_zero_grad(estimator, message):
  config = config_lib.default_config()
  config.estimator.update(estimator)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)


def test_clip_to_range_keeps_the_quantized_weights_where_the_ste_gradient_passes():
  """``optimizer.clip_to_range`` (ours, BinaryConnect's clip): after each update every quantized
  weight lies in [lo·α, hi·α] (2 bits: −2α … α), where the identity STE's gradient is 1, a weight
  already past the range comes back to its edge in one step, and everything else (float weights,
  quantized weights whose update stays inside) takes AdamW's update exactly."""
  alpha = 0.1
  params = {"dense": {"kernel": jnp.linspace(-0.5, 0.5, 60).reshape(6, 10),
                      "bias": jnp.linspace(-1.0, 1.0, 10)},
            "norm": {"scale": jnp.ones(10)}}
  quant = {"dense": {"kernel": jnp.array([[alpha]])}}  # the kernel is quantized, nothing else
  grads = jax.tree.map(lambda p: -jnp.sign(p) - 0.01, params)  # pushes |w| outward
  spec = quant_layers.QuantSpec(kind="fixed", bits=2)
  kwargs = dict(learning_rate=0.05, total_steps=10)
  clipped = optim.make_optimizer(clip_to_range=True, spec=spec, **kwargs)
  adamw = optim.make_optimizer(**kwargs)
  updates, _ = clipped.update(grads, clipped.init(params), params, quant=quant)
  plain, _ = adamw.update(grads, adamw.init(params), params)
  new = optax.apply_updates(params, updates)["dense"]["kernel"]
  assert float(new.min()) >= -2 * alpha - 1e-7 and float(new.max()) <= alpha + 1e-7
  w = params["dense"]["kernel"]
  past = (w < -2 * alpha) | (w > alpha)
  edge = jnp.where(w < 0, -2 * alpha, alpha)
  np.testing.assert_allclose(new[past], edge[past], atol=2e-3 * alpha)  # back to the edge
  stays = ~past & (w + plain["dense"]["kernel"] >= -2 * alpha) & (w + plain["dense"]["kernel"]
                                                                   <= alpha)
  assert stays.any()
  np.testing.assert_array_equal(updates["dense"]["kernel"][stays], plain["dense"]["kernel"][stays])
  for path in (("dense", "bias"), ("norm", "scale")):
    np.testing.assert_array_equal(updates[path[0]][path[1]], plain[path[0]][path[1]])
  grad = jax.grad(lambda x: jnp.sum(fz.quant.quantize(x, 2, alpha)))(new)
  np.testing.assert_array_equal(grad, 1.0)  # the STE gradient passes at every clipped weight


def test_clip_to_range_with_lsq_keeps_the_weights_in_the_updated_learned_range():
  """With LSQ the range is [−Q_N·|s'|, Q_P·|s'|] with s' the step *after* this update: when the
  step shrinks, the weights still end where LSQ's gradient of w is 1; LSQ's step sizes, the bias
  and the input step take AdamW's update exactly."""
  spec = quant_layers.QuantSpec(kind="lsq", bits=2, activations=True)
  layer = quant_layers.QuantDense(10, spec=spec)
  x = jax.random.normal(jax.random.key(1), (8, 6))
  variables = layer.init(jax.random.key(0), x)
  params, quant = dict(variables["params"]), variables["quant"]
  s = jnp.abs(params["kernel_scale"])  # one step per output column, shape [1, 10]
  params["kernel"] = jnp.linspace(-5.0, 5.0, 60).reshape(6, 10) * s  # many past −2s … s
  grads = jax.tree.map(jnp.ones_like, params)
  grads["kernel"] = -jnp.sign(params["kernel"]) - 0.01  # pushes |w| outward
  kwargs = dict(learning_rate=0.05, total_steps=10)  # and s down by about 0.05 (Adam)
  clipped = optim.make_optimizer(clip_to_range=True, spec=spec, **kwargs)
  adamw = optim.make_optimizer(**kwargs)
  updates, _ = clipped.update(grads, clipped.init(params), params, quant=quant)
  plain, _ = adamw.update(grads, adamw.init(params), params)
  new = optax.apply_updates(params, updates)
  s_new = jnp.abs(new["kernel_scale"])
  assert bool(jnp.all(s_new < s - 0.01))  # the range shrank: the old edges lie outside the new
  w = new["kernel"]
  assert bool(jnp.all((w >= -2 * s_new) & (w <= s_new)))
  assert bool(jnp.all((w.min(0) < -1.99 * s_new) & (w.max(0) > 0.99 * s_new)))  # at the edges
  for name in ("kernel_scale", "bias", "input_scale"):
    np.testing.assert_array_equal(updates[name], plain[name])
  grad = jax.grad(lambda k: jnp.sum(fz.quant.lsq.lsq_quantize(k, new["kernel_scale"], 2)))(w)
  np.testing.assert_array_equal(grad, 1.0)  # LSQ's gradient of w passes at every weight


@pytest.mark.parametrize("change, message", [
    (dict(quant=dict(kind="quest")),
     "optimizer.clip_to_range=True needs config.quant.kind 'fixed' or 'lsq' .*; got 'quest'"),
    (dict(quant=dict(kind="none"), estimator=dict(kind="ste")),
     "optimizer.clip_to_range=True needs config.quant.kind 'fixed' or 'lsq' .*; got 'none'")])
def test_clip_to_range_is_refused_without_a_weight_independent_range(change, message):
  config = config_lib.default_config()
  config.optimizer.clip_to_range = True
  for section, fields in change.items():
    config[section].update(fields)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)
  with pytest.raises(ValueError, match="clip_to_range=True needs spec="):
    optim.make_optimizer(clip_to_range=True, total_steps=10)
  with pytest.raises(ValueError, match="needs quant kind 'fixed' or 'lsq' .*; got 'quest'"):
    optim.clip_to_quantizer_range(quant_layers.QuantSpec(kind="quest", bits=2))
