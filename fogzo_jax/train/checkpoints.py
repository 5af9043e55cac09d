"""Verified checkpoints: train state + data iterator + a checksum, and a restore that falls back.

Each step's checkpoint (orbax) holds three items: ``state`` (the whole train state), ``data``
(the grain iterator's position, grain's orbax handler) and ``meta`` (JSON: a checksum of the
state's bytes computed on device at save time, and the wall time spent so far). ``restore``
tries the newest step first; a step that cannot be read (a truncated or missing file) or whose
checksum does not match what was saved (a flipped bit) is moved aside to
``checkpoints_rejected/<step>`` with a one-line reason, and the next older step is tried.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from typing import Any, Optional

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """Checkpoints cannot be written (or none of them can be read back)."""


@jax.jit
def _leaf_sums(tree):
  """Per leaf, Σ_i bits_i · (2i + 1) mod 2³² over the leaf's bits as uint32 (odd weights: any
  change of one element changes the sum)."""
  def one(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    bits = jax.lax.bitcast_convert_type(x, {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32,
                                            8: jnp.uint32}[x.dtype.itemsize])
    bits = bits.reshape(-1).astype(jnp.uint32)
    weights = 2 * jnp.arange(bits.size, dtype=jnp.uint32) + 1
    return jnp.sum(bits * weights, dtype=jnp.uint32)
  return jax.tree.map(one, tree)


def checksum(tree) -> str:
  """SHA-256 of the per-leaf bit sums (computed on the devices, sharded or not)."""
  sums = np.asarray([int(s) for s in jax.tree.leaves(jax.device_get(_leaf_sums(tree)))],
                    np.uint32)
  return hashlib.sha256(sums.tobytes()).hexdigest()


@dataclasses.dataclass
class Restored:
  state: Any
  step: int
  wall_time_s: float
  rejected: list  # (step, reason) of newer checkpoints that were skipped


class Checkpoints:
  """The checkpoints of one workdir (``<workdir>/checkpoints``)."""

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.rejected_directory = os.path.abspath(os.path.join(workdir, "checkpoints_rejected"))
    try:
      os.makedirs(self.directory, exist_ok=True)
      probe = os.path.join(self.directory, f".write_test_{os.getpid()}")
      with open(probe, "w") as f:
        f.write("ok")
      os.remove(probe)
    except OSError as e:
      raise CheckpointError(f"cannot write checkpoints to {self.directory}: {e.strerror or e}; "
                            "free that path or use another workdir") from None
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state, data_iterator, wall_time_s: float) -> None:
    meta = {"checksum": checksum(state), "wall_time_s": float(wall_time_s)}
    try:
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator),
          meta=ocp.args.JsonSave(meta)))
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"saving the checkpoint of step {step} to {self.directory} failed: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") \
          from None

  def wait(self) -> None:
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(f"writing a checkpoint to {self.directory} failed: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") \
          from None

  def restore(self, abstract_state, data_iterator) -> Optional[Restored]:
    """The newest checkpoint that reads back and verifies, or None when there is none."""
    rejected = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_iterator),
            meta=ocp.args.JsonRestore()))
        ok = checksum(out["state"]) == out["meta"]["checksum"]
        reason = "" if ok else "its checksum does not match the one recorded at save time"
      except Exception as e:  # pylint: disable=broad-except  # unreadable: try an older one
        reason = f"it cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
      if not reason:
        return Restored(out["state"], step, float(out["meta"].get("wall_time_s", 0.0)),
                        rejected)
      rejected.append((step, reason))
      self._reject(step, reason)
    if rejected:
      raise CheckpointError(f"no checkpoint in {self.directory} could be restored (newest: step "
                            f"{rejected[0][0]}, {rejected[0][1]}); use --force to start afresh")
    return None

  def _reject(self, step: int, reason: str) -> None:
    """Moves a bad step aside (so a new save of that step can happen) with its reason."""
    if jax.process_index() == 0:
      os.makedirs(self.rejected_directory, exist_ok=True)
      target = os.path.join(self.rejected_directory, str(step))
      shutil.rmtree(target, ignore_errors=True)
      shutil.move(os.path.join(self.directory, str(step)), target)
      with open(os.path.join(target, "REJECTED.json"), "w") as f:
        json.dump({"step": step, "reason": reason}, f)
    logging.warning("checkpoint step %d rejected: %s", step, reason)
    self.manager.reload()

  def close(self) -> None:
    try:
      self.manager.close()
    except Exception:  # pylint: disable=broad-except  # a failed async save already raised
      logging.exception("closing the checkpoint manager")
