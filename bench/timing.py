"""The timing rule every benchmark here shares: compile first, then the median of timed steps."""

import json
import os
import platform
import statistics
import time

import jax

from fogzo_jax.train.workdir import write_atomic


def median_step_seconds(step, state, batch, repeats: int):
  """Median wall time of ``state, metrics = step(state, batch)`` (compile excluded, each step
  waited for with ``block_until_ready``); returns (seconds, last state, last metrics)."""
  state, loss = step(state, batch)  # compile
  jax.block_until_ready(loss)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    state, loss = step(state, batch)
    jax.block_until_ready((state, loss))
    times.append(time.perf_counter() - t)
  return statistics.median(times), state, loss


def save(path: str, rows: list, **extra) -> dict:
  """Writes {machine, rows} as JSON to ``path`` (whole or not at all: a temporary file renamed,
  so a script may save after every row and a kill leaves the rows measured so far); machine =
  platform, device, jax version and ``extra``. Returns the machine dict (the scripts print it
  under their table)."""
  device = jax.devices()[0]
  machine = dict(platform=platform.platform(), processor=platform.processor(),
                 device=str(device), device_kind=device.device_kind,
                 device_count=jax.device_count(), cpu_count=os.cpu_count(),
                 jax=jax.__version__, **extra)
  write_atomic(path, json.dumps(dict(machine=machine, rows=rows), indent=2))
  return machine
