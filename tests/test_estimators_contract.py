"""optax's contract for fz.fogzo, fz.nspsa and fz.start_at (the checks optax holds its own
transformations to, optax/contrib/_common_test.py): jit and eager agree, one compilation for
all steps, stable state, dtypes kept, composition with inject_hyperparams, MultiSteps, chain,
donation, sharding, determinism; and pinned values, so that a refactoring that changes G for a
key fails here."""

import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import fogzo_jax as fz

PARAMS = {"w": jnp.asarray([[0.3, -1.2, 0.8], [0.5, -0.4, 1.1]], jnp.float32),
          "b": jnp.asarray([0.2, -0.7, 0.05], jnp.float32)}


def loss(params, x):
  """A 2-bit quantized linear map with an identity STE: piecewise constant in w."""
  w = fz.quant.quantize(params["w"], bits=2, scale=0.5, ste="identity")
  return jnp.sum((x @ w + params["b"] - 0.3) ** 2)


X = jnp.asarray([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.3]], jnp.float32)

TRANSFORMS = {
    "fogzo": lambda: fz.fogzo(2, beta=fz.linear_beta(0.5, 3), epsilon=0.1, key=1),
    "fogzo_ours": lambda: fz.fogzo(2, noise_share=fz.linear_noise_share(0.5, 3), epsilon=0.1,
                                   key=1, g_hat_norm="rms", g_hat_clip=1.7,
                                   smoothed_base=True),
    "fogzo_masked_chunked": lambda: fz.fogzo(5, beta=0.7, epsilon={"w": 0.1, "b": 0.05}, key=2,
                                             mask={"w": True, "b": False}, chunk_size=2),
    # the weights of PARAMS outside the 2-bit range [-1, 0.5] have STE gradient 0 (ours)
    "fogzo_skip_zero": lambda: fz.fogzo(2, noise_share=0.5, epsilon=0.1, key=6,
                                        skip_zero_grad=True),
    "gradient_noise_skip_zero": lambda: fz.gradient_noise(0.5, key=7, skip_zero_grad=True),
    "nspsa": lambda: fz.nspsa(3, epsilon=0.1, key=3, evaluation="sequential"),
    "start_at": lambda: fz.start_at(1, fz.fogzo(2, beta=0.5, epsilon=0.1, key=4)),
    "chain_adamw": lambda: optax.chain(fz.fogzo(1, beta=0.9, epsilon=0.1, key=5),
                                       optax.adamw(1e-2)),
}


def steps(tx, transform, num_steps=3, params=PARAMS, check=None):
  """Runs ``num_steps`` updates through ``transform(update_fn)``; returns updates and states.

  With ``check``, each step's inputs also go through ``check(update_fn)`` and both results are
  compared (on the same inputs, so float rounding does not compound along the trajectory).
  """
  update = transform(lambda g, s, p: tx.update(g, s, p, value_fn=loss, x=X))
  other = check(lambda g, s, p: tx.update(g, s, p, value_fn=loss, x=X)) if check else None
  state, outs, states = tx.init(params), [], []
  for _ in range(num_steps):
    g = jax.grad(loss)(params, X)
    if other:  # f32 ± differences cancel: agree to 1e-4 of the largest element
      want, got = update(g, state, params), other(g, state, params)
      scale = max(1.0, max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(want)))
      chex.assert_trees_all_close(got, want, rtol=0, atol=1e-4 * scale)
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    outs.append(updates)
    states.append(state)
  return outs, states


class ContractTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*[(name, name) for name in TRANSFORMS])
  def test_jit_and_eager_agree(self, name):
    steps(TRANSFORMS[name](), lambda f: f, check=self.variant)

  @parameterized.named_parameters(*[(name, name) for name in TRANSFORMS])
  def test_compiles_once_and_state_is_stable(self, name):
    chex.clear_trace_counter()  # the counter is per source line, shared by the parameters
    tx = TRANSFORMS[name]()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(g, s, p):
      return tx.update(g, s, p, value_fn=loss, x=X)

    _, states = steps(tx, lambda f: update, num_steps=4)
    for s in states[1:]:
      chex.assert_trees_all_equal_shapes_and_dtypes(s, states[0])
    chex.assert_trees_all_equal_structs(tx.init(PARAMS), states[0])

  @parameterized.named_parameters(*[(name, name) for name in TRANSFORMS])
  def test_updates_keep_the_params_dtypes(self, name):
    params = {"w": PARAMS["w"].astype(jnp.bfloat16), "b": PARAMS["b"]}
    outs, _ = steps(TRANSFORMS[name](), jax.jit, num_steps=2, params=params)
    for out in outs:
      chex.assert_trees_all_equal_dtypes(out, params)
      self.assertTrue(all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out)))

  def test_same_key_same_updates_across_instances(self):
    for name in TRANSFORMS:
      a, _ = steps(TRANSFORMS[name](), jax.jit)
      b, _ = steps(TRANSFORMS[name](), jax.jit)
      chex.assert_trees_all_equal(a, b)

  def test_jit_with_donated_state_and_params(self):
    tx = TRANSFORMS["chain_adamw"]()

    @jax.jit
    def step(params, state):
      updates, state = tx.update(jax.grad(loss)(params, X), state, params, value_fn=loss, x=X)
      return optax.apply_updates(params, updates), state

    donating = jax.jit(step, donate_argnums=(0, 1))
    p1, s1 = step(PARAMS, tx.init(PARAMS))
    p2, s2 = donating(jax.tree.map(jnp.copy, PARAMS), tx.init(PARAMS))
    chex.assert_trees_all_close((p1, s1), (p2, s2))


def test_inject_hyperparams_changes_beta_without_recompiling():
  chex.clear_trace_counter()
  make = optax.inject_hyperparams(fz.fogzo, static_args=("num_perturbations",))
  tx = make(num_perturbations=3, beta=1.0, epsilon=0.1, key=7)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def update(g, s):
    return tx.update(g, s, PARAMS, value_fn=loss, x=X)

  g = jax.grad(loss)(PARAMS, X)
  state = tx.init(PARAMS)
  out0, state = update(g, state)
  state.hyperparams["beta"] = jnp.asarray(0.25, jnp.float32)
  state.hyperparams["epsilon"] = jnp.asarray(0.2, jnp.float32)
  out1, state = update(g, state)
  # The same as a plain fogzo at those values, for the same key and step.
  for t, beta, eps, out in ((0, 1.0, 0.1, out0), (1, 0.25, 0.2, out1)):
    ref = fz.fogzo(3, beta=beta, epsilon=eps, key=7)
    want, _ = ref.update(g, fz.FogzoState(jnp.int32(t), ref.init(PARAMS).key), PARAMS,
                         value_fn=loss, x=X)
    chex.assert_trees_all_close(out, want, rtol=1e-5, atol=1e-6)


def test_inject_hyperparams_without_static_n_says_how():
  tx = optax.inject_hyperparams(fz.fogzo)(beta=0.5, epsilon=0.1)
  state = tx.init(PARAMS)
  with pytest.raises(ValueError, match=r"static_args=\('num_perturbations',\)"):
    jax.jit(lambda s: tx.update(PARAMS, s, PARAMS, value_fn=loss, x=X))(state)


def test_multisteps_accumulates_then_estimates():
  """MultiSteps(k = 2): the inner chain (FOGZO + SGD) runs on the mean of two STE gradients."""
  inner = optax.chain(fz.fogzo(2, beta=0.8, epsilon=0.1, key=8), optax.sgd(0.1))
  tx = optax.MultiSteps(inner, every_k_schedule=2)
  state = tx.init(PARAMS)
  g1, g2 = jax.grad(loss)(PARAMS, X), jax.grad(loss)(PARAMS, 2 * X)
  up1, state = tx.update(g1, state, PARAMS, value_fn=loss, x=X)
  chex.assert_trees_all_equal(up1, jax.tree.map(jnp.zeros_like, PARAMS))
  up2, state = tx.update(g2, state, PARAMS, value_fn=loss, x=X)
  want, _ = inner.update(jax.tree.map(lambda a, b: (a + b) / 2, g1, g2), inner.init(PARAMS),
                         PARAMS, value_fn=loss, x=X)
  chex.assert_trees_all_close(up2, want, rtol=1e-5, atol=1e-6)


def test_clip_by_global_norm_before_and_after():
  """Clipping the STE gradient before FOGZO leaves G unchanged (ĝ is scale-free); clipping
  after bounds ‖G‖."""
  g = jax.tree.map(lambda x: 100 * x, jax.grad(loss)(PARAMS, X))
  plain = fz.fogzo(2, beta=0.6, epsilon=0.1, key=9)
  ref, _ = plain.update(g, plain.init(PARAMS), PARAMS, value_fn=loss, x=X)
  before = optax.chain(optax.clip_by_global_norm(1e-3), fz.fogzo(2, beta=0.6, epsilon=0.1, key=9))
  out, _ = before.update(g, before.init(PARAMS), PARAMS, value_fn=loss, x=X)
  chex.assert_trees_all_close(out, ref, rtol=1e-4, atol=1e-5)
  after = optax.chain(fz.fogzo(2, beta=0.6, epsilon=0.1, key=9), optax.clip_by_global_norm(0.5))
  out, _ = after.update(g, after.init(PARAMS), PARAMS, value_fn=loss, x=X)
  assert float(optax.tree.norm(ref)) > 0.5
  np.testing.assert_allclose(float(optax.tree.norm(out)), 0.5, rtol=1e-5)


def test_pinned_values():
  """G for fixed keys, pinned (2026-11-29; noise from fold_in(key, step), one key per leaf).
  A change here changes every FOGZO run's numbers: say so in the change."""
  g = jax.grad(loss)(PARAMS, X)
  tx = fz.fogzo(2, beta=0.7, epsilon=0.1, key=11)
  out0, state = tx.update(g, tx.init(PARAMS), PARAMS, value_fn=loss, x=X)
  out1, _ = tx.update(g, state, PARAMS, value_fn=loss, x=X)
  ns = fz.nspsa(3, epsilon=0.1, key=12)
  out2, _ = ns.update(None, ns.init(PARAMS), PARAMS, value_fn=loss, x=X)
  got = np.concatenate([np.ravel(out0["w"]), np.ravel(out1["b"]), np.ravel(out2["w"])])
  np.testing.assert_allclose(got, PINNED, rtol=1e-5, atol=1e-6)


PINNED = np.array([
    0.51059765, 1.6593069, 5.3421264, 4.63269, 1.7987348, -1.2842882,
    1.6050138, -16.101162, 2.6575513, -6.2601027, 6.2367735, 0.10670455,
    10.987982, -1.61588, -8.3139105])


def test_sharding_follows_params_on_eight_devices():
  """On 8 fake CPU devices: updates keep the params' shardings, the state is replicated."""
  script = textwrap.dedent("""
      import jax, jax.numpy as jnp, numpy as np, optax
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      import fogzo_jax as fz
      mesh = Mesh(np.array(jax.devices()), ("data",))
      row, rep = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
      params = {"w": jax.device_put(jnp.linspace(-1, 1, 64).reshape(16, 4), row),
                "b": jax.device_put(jnp.ones(4), rep)}
      loss = lambda p: jnp.sum(jnp.round(4 * p["w"]) ** 2) + jnp.sum(p["b"] ** 2)
      for tx in (fz.fogzo(2, beta=0.5, epsilon=0.1, key=0), fz.nspsa(4, epsilon=0.1, key=0)):
        state = tx.init(params)
        step = jax.jit(lambda g, s, p: tx.update(g, s, p, value_fn=loss))
        out, state = step(jax.grad(loss)(params), state, params)
        assert out["w"].sharding.is_equivalent_to(row, 2), out["w"].sharding
        assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(state))
        ref, _ = tx.update(jax.grad(loss)(params), tx.init(params), jax.device_get(params),
                           value_fn=loss)
        np.testing.assert_allclose(out["w"], ref["w"], rtol=1e-5, atol=1e-6)
      print("ok", len(jax.devices()))
  """)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=os.environ.get("XLA_FLAGS", "") +
             " --xla_force_host_platform_device_count=8")
  result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "ok 8"
