"""Two real JAX processes on this machine (jax.distributed + gloo CPU collectives) train like one.

Each process owns one CPU device and feeds its half of every global batch; the estimator's
perturbed losses are computed on the global batch; only process 0 writes metrics.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKER = """
import json
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
if {procs} > 1:
  jax.distributed.initialize(coordinator_address="localhost:{port}", num_processes={procs},
                             process_id={pid})
from fogzo_jax.train import sweep, train_and_evaluate
config = sweep.load_config("configs/mnist_mlp.py")
sweep.apply_overrides(config, ["estimator.kind=fogzo", "estimator.num_perturbations=4",
                               "num_train_steps=12", "eval_every_steps=6",
                               "checkpoint_every_steps=6", "data.batch_size=256"])
config.distributed, config.fsdp = {procs} > 1, {fsdp}
s = train_and_evaluate(config, {workdir!r})
print("RESULT", json.dumps(dict(procs=jax.process_count(), devices=s["devices"],
                                loss=s["test_loss"], sha=s["params_sha256"])))
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_workers(procs, workdir, devices_per_process=1, fsdp=False):
  port = free_port()
  env = dict(os.environ,
             XLA_FLAGS=os.environ.get("XLA_FLAGS", "") +
             f" --xla_force_host_platform_device_count={devices_per_process}")
  workers = [subprocess.Popen(
      [sys.executable, "-c", WORKER.format(procs=procs, port=port, pid=pid, fsdp=fsdp,
                                           workdir=str(workdir))],
      env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for pid in range(procs)]
  results = []
  for w in workers:
    out, err = w.communicate(timeout=300)
    assert w.returncode == 0, err[-3000:]
    results.append(json.loads(out.split("RESULT ")[-1]))
  return results


@pytest.mark.parametrize("fsdp", [  # FSDP shards params and batch; plain DP in the slow suite
    pytest.param(False, marks=pytest.mark.slow), True])
def test_two_processes_match_one(tmp_path, fsdp):
  """2 processes × 1 device against 1 process × 2 devices: the same global computation. With
  FSDP the parameters are split across the processes (params_sha256 gathers them)."""
  two = run_workers(2, tmp_path / "two", fsdp=fsdp)
  (one,) = run_workers(1, tmp_path / "one", devices_per_process=2, fsdp=fsdp)
  assert [r["procs"] for r in two] == [2, 2] and all(r["devices"] == 2 for r in two)
  assert one["procs"] == 1 and one["devices"] == 2
  assert two[0]["sha"] == two[1]["sha"]               # the processes hold the same parameters
  assert abs(two[0]["loss"] - one["loss"]) <= 1e-4 * one["loss"]
  rows = [json.loads(line) for line in open(tmp_path / "two" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [6, 12]         # written once, by process 0
