"""Input handling of ``fz.fogzo`` / ``fz.nspsa``: arguments, masks, ε, extra arguments.

Everything here turns what a user may reasonably pass (a scalar or per-leaf ε, a callable ε or
mask, a mask that is a prefix of params or any ``Mapping``, boolean-array masks, extra keyword
arguments for ``value_fn``) into the trees the estimator works on, or into one clear error.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np


def is_none(x) -> bool:
  return x is None


def concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def static_int(value, name: str, low: int, allow_none: bool = False):
  if value is None and allow_none:
    return None
  if not concrete(value):
    raise ValueError(f"{name} fixes array shapes and cannot be traced: with "
                     f"optax.inject_hyperparams pass static_args=({name!r},)")
  if isinstance(value, bool) or np.ndim(value) or int(value) != value or value < low:
    raise ValueError(f"{name} must be {'None or ' if allow_none else ''}an integer ≥ {low}; "
                     f"got {value!r}")
  return int(value)


def check_unit_interval(value, name: str) -> None:
  if callable(value) or not concrete(value):
    return
  if not np.all(np.isfinite(value)) or not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{name} must be a float in [0, 1] or a schedule step -> {name}; "
                     f"got {value!r}")


BETA_RESOLUTION = 1e-6  # float32's spacing below 1 is 6e-8: a smaller 1 − β is > 3 % off or 0


def check_beta_resolution(value, name: str) -> None:
  """Refuses a concrete β with 0 < 1 − β < 1e-6: β is used in float32, where such a value rounds
  to within 6e-8 of 1 (1 − 10⁻⁹ is exactly 1), so the noise part would be misscaled or lost."""
  if callable(value) or not concrete(value):
    return
  gap = 1.0 - float(value)
  if 0.0 < gap < BETA_RESOLUTION:
    raise ValueError(f"{name}={value!r}: 1 - {name} = {gap:.2g} is below float32's resolution "
                     f"near 1 (it would round to {float(np.float32(value))!r}, the noise part "
                     "misscaled or lost); give noise_share=ρ instead (exact at any size: "
                     f"1 - β ≈ ρ²/d), or {name}=1.0 for no noise part")


def check_epsilon(eps_tree, where: str) -> None:
  """Refuses a concrete ε that is not finite and positive (traced values are checked in-graph)."""
  for leaf in jax.tree.leaves(eps_tree):
    if concrete(leaf) and not np.all(np.isfinite(np.asarray(leaf, np.float64)) &
                                      (np.asarray(leaf, np.float64) > 0)):
      raise ValueError(f"epsilon must be finite and > 0 (a float, a pytree of per-leaf values "
                       f"or a callable params -> pytree){where}; got {eps_tree!r}")


def key_data(key) -> jax.Array:
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.key_data(jax.random.key(int(key)))
  key = jnp.asarray(key)
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(key)
  if key.shape == () and jnp.issubdtype(key.dtype, jnp.integer):  # e.g. inject_hyperparams
    return jax.random.key_data(jax.random.key(key))
  if key.dtype != jnp.uint32 or key.shape != (2,):
    raise ValueError(f"key must be an int or a jax.random key; got dtype {key.dtype}, "
                     f"shape {key.shape}")
  return key


def as_dicts(tree):
  """Any ``Mapping`` (FrozenDict, …) as a plain dict, recursively, so it matches dict params."""
  if isinstance(tree, dict) or hasattr(tree, "items") and hasattr(tree, "keys"):
    return {k: as_dicts(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
    return type(tree)(as_dicts(v) for v in tree)
  return tree


def like_params(tree, params, what: str):
  """``tree`` broadcast to the leaves of params: a scalar to all, a prefix tree to its subtrees."""
  if not (isinstance(tree, (dict, list, tuple)) or hasattr(tree, "keys")) and jnp.ndim(tree) == 0:
    return jax.tree.map(lambda _: tree, params)
  if jax.tree.structure(tree) != jax.tree.structure(params):
    tree, params_ = as_dicts(tree), as_dicts(params)
    if jax.tree.structure(params_) == jax.tree.structure(params):
      params = params_
  try:
    out = jax.tree.map(lambda t, sub: jax.tree.map(lambda _: t, sub), tree, params,
                       is_leaf=is_none)
  except ValueError:
    raise ValueError(f"{what} must have the structure of params (or a prefix of it): params "
                     f"are {jax.tree.structure(params)}, {what} is {jax.tree.structure(tree)}"
                     ) from None
  return jax.tree.unflatten(jax.tree.structure(params), jax.tree.leaves(out, is_leaf=is_none))


def selection(mask, params, mask_kwargs):
  """Per leaf of params: None (not perturbed), True (every element) or a boolean array."""
  if mask is None:
    return jax.tree.map(lambda _: True, params)
  tree = like_params(mask(params, **mask_kwargs) if callable(mask) else mask, params, "mask")

  def leaf(m, p):
    if m is None or isinstance(m, bool):
      return True if m else None
    if concrete(m):
      m = np.asarray(m)
      if m.dtype != bool:
        raise ValueError(f"mask leaves must be bools or boolean arrays; got dtype {m.dtype}")
      if not m.any():
        return None
      if m.all() and np.broadcast_shapes(m.shape, p.shape) == p.shape:
        return True
    if jnp.broadcast_shapes(jnp.shape(m), p.shape) != p.shape:
      raise ValueError(f"a mask leaf of shape {jnp.shape(m)} does not broadcast to its "
                       f"parameter's shape {p.shape}")
    return jnp.asarray(m, bool)
  return jax.tree.map(leaf, tree, params, is_leaf=is_none)


def accepted(fn: Callable, kwargs: dict) -> Optional[dict]:
  """The keyword arguments ``fn`` accepts (all with ``**kwargs``; None without a signature)."""
  try:
    parameters = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):  # no signature (a builtin)
    return None
  if any(p.kind == p.VAR_KEYWORD for p in parameters):
    return dict(kwargs)
  names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
  return {k: v for k, v in kwargs.items() if k in names}


def route_kwargs(value_fn: Callable, callables: tuple, extra_args: dict) -> tuple[dict, list]:
  """Splits the extra arguments between ``value_fn`` and the ε / mask callables, each getting
  the ones its signature names (as optax's line searches do); an argument none of them takes is
  an error, except ``value`` and ``grad``, which belong to optax's line searches."""
  extra_args = {k: v for k, v in extra_args.items() if k not in ("value", "grad")}
  for_value = accepted(value_fn, extra_args)
  if for_value is None:
    return extra_args, [{} for _ in callables]
  for_callables = [{} if not callable(f) else accepted(f, extra_args) or {} for f in callables]
  used = set(for_value).union(*for_callables)
  unused = sorted(set(extra_args) - used)
  if unused:
    raise TypeError(f"fogzo/nspsa update: extra arguments {unused} are not parameters of "
                    f"value_fn{inspect.signature(value_fn)} (nor of the epsilon or mask "
                    "callables); pass only what they take")
  return for_value, for_callables


def scalar_loss(out) -> jax.Array:
  if isinstance(out, (tuple, list)):
    raise TypeError("value_fn must return a scalar loss, got a tuple/list (loss, aux?); pass "
                    "e.g. lambda params, **kw: loss_fn(params, **kw)[0]")
  out = jnp.asarray(out)
  if out.shape != ():
    raise ValueError(f"value_fn must return a scalar loss (the mean over the batch); got shape "
                     f"{out.shape}")
  return out.astype(jnp.float32)


class PerturbedParts(NamedTuple):
  """The perturbed part of one update (trees like params, None on unperturbed leaves).

  Attributes:
    selection: per leaf None (not perturbed), True (every element) or a boolean array.
    theta: the perturbed parameters.
    grads: the incoming updates g on the selected elements, float32 (0 elsewhere).
    epsilon: ε per leaf, float32, broadcastable to it (1.0 where ε was invalid).
    epsilon_ok: bool scalar, False if any ε is non-finite or ≤ 0 (traced values).
    size: d, the number of perturbed elements (a float32 scalar).
  """
  selection: Any
  theta: Any
  grads: Any
  epsilon: Any
  epsilon_ok: jax.Array
  size: jax.Array


def perturbed_parts(params, updates, mask, epsilon, mask_kwargs=None,
                    epsilon_kwargs=None, skip_zero_grad: bool = False) -> Optional[PerturbedParts]:
  """Selects what FOGZO perturbs (``mask``) and resolves ε; None when nothing is selected.

  Callable ``mask`` / ``epsilon`` are called as ``fn(params, **kwargs)`` with their kwargs.
  ``skip_zero_grad``: also leave out the elements whose incoming update (the STE gradient) is
  exactly 0 (a traced element mask, so the count d is traced too).
  """
  sel = selection(mask, params, mask_kwargs or {})
  if all(s is None for s in jax.tree.leaves(sel, is_leaf=is_none)):
    return None
  if skip_zero_grad:
    sel = jax.tree.map(lambda s, g: None if s is None else (g != 0) if s is True else s & (g != 0),
                       sel, updates, is_leaf=is_none)

  def restricted(tree):
    return jax.tree.map(restrict, sel, tree, is_leaf=is_none)

  theta = jax.tree.map(lambda s, p: None if s is None else p, sel, params, is_leaf=is_none)
  eps_tree = epsilon(params, **(epsilon_kwargs or {})) if callable(epsilon) else epsilon
  if callable(epsilon):
    check_epsilon(eps_tree, " (as returned by the epsilon callable)")
  eps = jax.tree.map(lambda s, e, p: None if s is None else leaf_epsilon(e, p), sel,
                     like_params(eps_tree, params, "epsilon"), params, is_leaf=is_none)
  eps_ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(e) & (e > 0)) for e in jax.tree.leaves(eps)]))
  eps = jax.tree.map(lambda e: jnp.where(eps_ok, e, 1.0), eps)
  ones = restricted(jax.tree.map(lambda p: jnp.ones(p.shape, jnp.float32), params))
  size = sum(jnp.sum(x) for x in jax.tree.leaves(ones))
  grads = restricted(jax.tree.map(lambda x: x.astype(jnp.float32), updates))
  return PerturbedParts(sel, theta, grads, eps, eps_ok, size)


def restrict(s, x):
  """x on the selected elements: None for an unselected leaf, 0 outside an element mask."""
  return None if s is None else (x if s is True else jnp.where(s, x, 0).astype(x.dtype))


def leaf_epsilon(e, p) -> jax.Array:
  e = jnp.asarray(e, jnp.float32)
  try:
    fits = jnp.broadcast_shapes(e.shape, p.shape) == p.shape
  except ValueError:
    fits = False
  if not fits:
    raise ValueError(f"an epsilon leaf has shape {e.shape}, which does not broadcast to its "
                     f"parameter's shape {p.shape}")
  return e
