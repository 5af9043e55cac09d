"""bench/throughput.py: the FLOP count it divides by, and a sharded run on fake CPU devices."""

import json
import math
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import throughput
from fogzo_jax.models.llama import Llama, ffn_width


def test_model_flops_per_token_counts_every_matmul_but_the_embedding():
  d, layers, vocab, seq = 64, 3, 257, 32
  params = nn.unbox(Llama(vocab_size=vocab, dim=d, layers=layers, heads=2).init(
      jax.random.key(0), jnp.zeros((1, seq), jnp.int32)))["params"]
  # per block: wq wk wv wo (4d²), w1 w3 w2 (3·d·ffn), two RMSNorm scales; final norm; head.
  n = layers * (4 * d * d + 3 * d * ffn_width(d) + 2 * d) + d + d * vocab
  assert throughput.model_flops_per_token(params, layers, d, seq) == 2 * n + 4 * layers * d * seq


# Each row is a compile of a reduced LLaMA step (20-30 s on 2 cores): FOGZO's two rows by default,
# STE's before them in the slow suite.
@pytest.mark.parametrize("estimators", [
    "fogzo", pytest.param("ste,fogzo", marks=pytest.mark.slow)])
def test_sharded_rows_on_fake_devices_and_mfu_from_a_given_peak(tmp_path, estimators):
  out = tmp_path / "tp.json"
  env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") +
             " --xla_force_host_platform_device_count=2")
  subprocess.run([sys.executable, os.path.join(ROOT, "bench", "throughput.py"), "--size=9m",
                  "--devices=1,2", f"--estimators={estimators}", "--per_device_batch=2",
                  "--seq_len=16", "--repeats=3", "--peak_tflops=1", f"--out={out}"],
                 check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
  rows = json.loads(out.read_text())["rows"]
  assert [(r["estimator"], r["devices"], r["batch"]) for r in rows] == [
      (e, k, 2 * k) for e in estimators.split(",") for k in (1, 2)]
  for r in rows:
    assert r["forward_passes"] == (3 if r["estimator"] == "ste" else 5)  # FOGZO: 2 more
    flop_s = r["flops_per_token"] * r["tokens_per_s"] * r["forward_passes"]
    assert r["model_tflops_per_s"] * 1e12 == pytest.approx(flop_s)
    assert r["mfu"] == pytest.approx(r["model_tflops_per_s"] / r["devices"])  # peak 1 TFLOP/s
    assert math.isfinite(r["loss"]) and r["loss"] > 0
  assert all(r["scaling_efficiency"] == 1.0 for r in rows if r["devices"] == 1)


def test_more_devices_than_present_is_a_usage_error(tmp_path):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "throughput.py"),
                         "--devices=64", f"--out={tmp_path / 'x.json'}"],
                        cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and "--devices: 64 >" in proc.stderr


def test_cost_plan_fogzo_memory_stays_within_its_bound():
  """Compiled, never run: FOGZO's extra memory over STE is at most k perturbed copies of the
  perturbed weights plus one forward's temporaries (k = 2 vmapped, 1 sequential)."""
  xla_flags = os.environ.get("XLA_FLAGS")
  import cost_plan  # pylint: disable=import-outside-toplevel  # bench/, on pytest's pythonpath
  # Imported, the script must leave the environment alone: an 8-device XLA_FLAGS leaked into
  # os.environ made every later train.py subprocess data-parallel (resume tests then compared
  # an 8-device run with a 1-device reference).
  assert os.environ.get("XLA_FLAGS") == xla_flags
  cost_plan.PAPER_CONFIGS["tiny_llama"] = ("llama.py:9m", {"vocab_size": 257})
  real_config_for = cost_plan.config_for

  def small(name, estimator, dtype, devices):
    config = real_config_for(name, estimator, dtype, devices)
    # unrolled (no loop): XLA's count is exact, so row() compiles no depth-1/2 extrapolation
    config.model.update(dim=64, layers=2, heads=2, scan_unroll=2)
    config.data.update(batch_size=8, seq_len=32)
    return config
  cost_plan.config_for = small
  try:
    rows = cost_plan.with_ratios([cost_plan.row("tiny_llama", e, "float32", 1)
                                  for e in ("ste", "fogzo", "fogzo_seq")])
  finally:
    cost_plan.config_for = real_config_for
    del cost_plan.PAPER_CONFIGS["tiny_llama"]
  ste, vmapped, sequential = rows
  assert ste["flops"] > 0 and ste["total_gb"] > 0
  for r in (vmapped, sequential):
    assert r["flop_ratio"] == pytest.approx(5 / 3, rel=0.1)  # F + B + 2F over F + B, B = 2F
    assert r["extra_gb"] <= r["bound_gb"], r
  assert sequential["evaluations_at_once"] == 1 and vmapped["evaluations_at_once"] == 2


def test_cost_plan_counts_every_scanned_block():
  """XLA counts a loop body once; the depth-1 / depth-2 extrapolation equals the unrolled count."""
  import cost_plan  # pylint: disable=import-outside-toplevel
  from fogzo_jax.train import sharding as sharding_lib  # pylint: disable=import-outside-toplevel
  config = cost_plan.load_config(os.path.join(cost_plan.ROOT, "configs", "llama.py:9m"))
  config.model.update(dim=32, layers=3, heads=2)
  config.data.update(batch_size=4, seq_len=16)
  config.estimator.kind = "ste"  # the count does not depend on the estimator; STE compiles fastest
  mesh = sharding_lib.make_mesh(False, jax.devices()[:1])
  args = {"vocab_size": 64}
  extrapolated = cost_plan.scanned_cost(config, args, mesh)
  scanned = cost_plan._cost(cost_plan.compile_step(config, args, mesh)[0])  # pylint: disable=protected-access
  config.model.scan_unroll = 3
  unrolled = cost_plan._cost(cost_plan.compile_step(config, args, mesh)[0])  # pylint: disable=protected-access
  assert scanned["flops"] < 0.9 * unrolled["flops"]  # the loop's body counted once
  # Not exact: XLA fuses the elementwise ops of an unrolled depth-3 step a little differently
  # (1.2 % here); the undercount it corrects is a factor of about the depth.
  assert extrapolated["flops"] == pytest.approx(unrolled["flops"], rel=0.03)


def test_cost_plan_merge_keeps_one_row_per_setting_and_summarises(tmp_path):
  """Rows compiled in several runs merge into one table: a later file's row replaces an earlier
  one's (from a run's JSON or from the rows a stopped run printed), ratios are recomputed, and
  the summary puts the estimators of a setting on one line."""
  import cost_plan  # pylint: disable=import-outside-toplevel

  def r(estimator, total, flops, **extra):
    return dict(config="llama_9m", estimator=estimator, dtype="bfloat16", devices=1,
                flops=flops, total_gb=total, forward_passes=3 if estimator == "ste" else 5,
                fits={"11 GB": total <= 11, "32 GB": True, "80 GB": True}, **extra)
  fogzo_extra = dict(perturbed_gb=0.1, forward_temp_gb=0.5, evaluations_at_once=2)
  first, second = tmp_path / "a.json", tmp_path / "b.json"
  first.write_text(json.dumps({"rows": [r("fogzo", 99.0, 1.0, **fogzo_extra), r("ste", 10.0, 3.0)]}))
  second.write_text("I1129 a log line\n" + json.dumps(r("fogzo", 10.5, 5.0, **fogzo_extra)) + "\n")
  rows = cost_plan.merge([str(first), str(second)])
  assert [x["estimator"] for x in rows] == ["ste", "fogzo"]  # table order, one row each
  assert rows[1]["total_gb"] == 10.5 and rows[1]["flop_ratio"] == pytest.approx(5 / 3)
  assert rows[1]["extra_gb"] == pytest.approx(0.5) and rows[1]["bound_gb"] == pytest.approx(0.7)
  (tmp_path / "c.log").write_text("a log without rows\n")
  with pytest.raises(ValueError, match="no cost_plan rows"):
    cost_plan.merge([str(tmp_path / "c.log")])
  (line,) = cost_plan.summary_markdown(rows).splitlines()[2:]
  assert line == ("| llama_9m | bfloat16 | 1 | 3e-12 | 1.67; – | 10 / 10.5 / – / – | 0.5 / 0.7 | "
                  "yes / yes / yes |")
  # "fits" reads the FOGZO row of the config's own evaluation: a sequential one that does not fit
  rows.append(r("fogzo_seq", 12.0, 5.0, **fogzo_extra))
  (line,) = cost_plan.summary_markdown(rows, lambda config: "fogzo_seq").splitlines()[2:]
  assert line.endswith("| yes, FOGZO no / yes / yes |")
  assert cost_plan.default_fogzo("resnet18") == "fogzo_seq"  # configs/resnet18_in100.py
  assert cost_plan.default_fogzo("llama_9m") == "fogzo"


@pytest.mark.slow  # three 8-device compiles of a ResNet: minutes on 2 cores
def test_cost_plan_convolutional_fogzo_under_fsdp_stays_near_five_thirds():
  """On 8 fake devices with FSDP, the ResNet and DeiT configs' FOGZO (sequential ± pair, their
  default) costs about 5/3 of STE's FLOPs per device and stays within its memory bound; the
  vmapped pair of convolutions does not (about 5.7x on ResNet-18), which is why they default
  to sequential."""
  script = """
import os, sys, json
sys.path.insert(0, "bench")
import jax, cost_plan
from fogzo_jax.train import sharding
for name in ("resnet18", "deit_tiny"):
  assert cost_plan.load_config(os.path.join(cost_plan.ROOT, "configs",
      cost_plan.PAPER_CONFIGS[name][0])).estimator.evaluation == "sequential"
real = cost_plan.config_for
def small(name, estimator, dtype, devices):
  c = real(name, estimator, dtype, devices)
  c.model.width = 8
  c.data.update(batch_size=32, image_size=32)
  return c
cost_plan.config_for = small
rows = cost_plan.with_ratios([cost_plan.row("resnet18", e, "float32", 8)
                              for e in ("ste", "fogzo_seq", "fogzo")])
print("RESULT", json.dumps(rows))
"""
  env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") +
             " --xla_force_host_platform_device_count=8")
  proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
  _, sequential, vmapped = json.loads(line[len("RESULT "):])
  assert sequential["flop_ratio"] == pytest.approx(5 / 3, rel=0.1)
  assert sequential["extra_gb"] <= sequential["bound_gb"]
  assert vmapped["flop_ratio"] > 2.5  # the known cost of the vmapped pair of convolutions
