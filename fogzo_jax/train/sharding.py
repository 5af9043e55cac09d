"""Sharding, declared: a ("data", "fsdp") mesh and logical-axis rules for the parameters.

The models annotate their kernels with logical axis names (``nn.with_logical_partitioning``:
``("embed", "mlp")`` for dense kernels, ``(None, None, "embed", "mlp")`` for convolutions,
``("vocab", "embed")`` for the LLaMA embedding, a leading ``"layers"`` for ``nn.scan`` stacks).
``RULES`` maps them to the mesh: the batch is split over both mesh axes, "embed" over "fsdp".
With ``fsdp=False`` the mesh is (devices, 1), so every parameter is replicated (data parallel);
with ``fsdp=True`` it is (1, devices) and each annotated kernel is split along its "embed" axis
(XLA inserts the all-gathers). A dimension the mesh axis does not divide stays whole (listed by
``train.log``); unannotated leaves (biases, norms, quantizer steps, PRNG keys, counters) are
replicated. Optimizer states follow their parameters (``optax.tree_map_params``).
"""

from __future__ import annotations

import logging

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

RULES = (("batch", ("data", "fsdp")), ("embed", "fsdp"), ("mlp", None), ("vocab", None),
         ("layers", None))


def make_mesh(fsdp: bool, devices=None) -> Mesh:
  devices = np.array(jax.devices() if devices is None else devices)
  shape = (1, devices.size) if fsdp else (devices.size, 1)
  return Mesh(devices.reshape(shape), ("data", "fsdp"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows of a batch over every device (the logical "batch" axis)."""
  return NamedSharding(mesh, nn.logical_to_mesh_axes(("batch",), RULES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _fit(sharding: NamedSharding, shape) -> NamedSharding:
  """Drops the mesh axes of the dimensions they do not divide."""
  spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
  for i, axes in enumerate(spec):
    if axes is None:
      continue
    size = np.prod([sharding.mesh.shape[a] for a in (axes if isinstance(axes, tuple) else
                                                     (axes,))])
    if shape[i] % size:
      logging.info("sharding: dimension %d of a %s leaf is not divisible by %d devices: "
                   "kept whole", i, shape, size)
      spec[i] = None
  return NamedSharding(sharding.mesh, P(*spec))


def variable_shardings(abstract_variables, mesh: Mesh):
  """Shardings of the (unboxed) variables from the abstract, annotated ones (``eval_shape`` of
  ``model.init``)."""
  specs = nn.get_partition_spec(abstract_variables)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, RULES)
  return jax.tree.map(lambda s, x: _fit(s, x.shape), shardings, nn.unbox(abstract_variables))


def opt_state_shardings(tx, abstract_opt_state, param_shardings, mesh: Mesh):
  """The optimizer state's leaves like their parameters; everything else replicated."""
  return optax.tree_map_params(tx, lambda _, s: s, abstract_opt_state, param_shardings,
                               transform_non_params=lambda _: replicated(mesh))
