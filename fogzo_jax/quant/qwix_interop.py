"""FOGZO for Flax models quantized with Qwix (Google's quantization library, QAT by rules).

Qwix's quantized training (``qwix.QtProvider`` with a ``weight_qtype`` rule) fake-quantizes the
weights of every matched ``dot_general`` / conv with a symmetric absmax scale per output
channel and a straight-through backward. FOGZO needs only two things from it: which leaves are
quantized (the mask) and their quantization step (for ε = Δ·ε̄(identity)). Qwix computes its
scales on the fly from the weights, so we do the same here:

  Δ = max |w| over the input axes / (2^(b−1) − ½)       (qwix 0.1.8's intN absmax grid)

(tests/quant/test_qwix_interop.py measures Δ on Qwix's own output, so a change of convention
there fails loudly here.) Usage::

  qmodel = qwix.quantize_model(model, qwix.QtProvider([qwix.QtRule(module_path=".*",
                                                                    weight_qtype="int4")]))
  tx = optax.chain(fz.fogzo(epsilon=functools.partial(qwix_epsilon, bits=4),
                            mask=qwix_mask, noise="uniform", ...), optax.adamw(1e-3))
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from fogzo_jax import perturbations

QTYPE_BITS = {"int8": 8, "int4": 4, "int2": 2}


def _is_weight(path, leaf, module_path: str) -> bool:
  names = [str(getattr(k, "key", k)) for k in path]
  return (names[-1] == "kernel" and leaf.ndim >= 2
          and re.fullmatch(module_path, "/".join(names[:-1])) is not None)


def qwix_mask(params, module_path: str = ".*"):
  """True for the kernels (≥ 2-D ``kernel`` leaves) under modules matching ``module_path``."""
  return jax.tree_util.tree_map_with_path(lambda p, x: _is_weight(p, x, module_path), params)


def absmax_step(kernel: jax.Array, bits: int) -> jax.Array:
  """Qwix's per-output-channel step of a kernel [..., out]: shape [1, …, 1, out]."""
  axes = tuple(range(kernel.ndim - 1))
  return jnp.max(jnp.abs(kernel), axis=axes, keepdims=True) / (2 ** (bits - 1) - 0.5)


def qwix_epsilon(params, bits: int = 4, module_path: str = ".*", ste: str = "identity"):
  """ε = Δ·ε̄(ste) on the masked kernels (1.0 elsewhere; those leaves are not perturbed)."""
  eps_bar = perturbations.implicit_smoothing(ste).eps_bar
  return jax.tree_util.tree_map_with_path(
      lambda p, x: jax.lax.stop_gradient(absmax_step(x, bits)) * eps_bar
      if _is_weight(p, x, module_path) else jnp.float32(1.0), params)
