"""bench/step_time.py: the rows reach the JSON file one by one, so a killed run keeps them."""

import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The timed step is replaced by fixed times, the third call failing as a time limit would.
SCRIPT = textwrap.dedent("""
    import sys
    from absl import app
    import step_time
    times = iter([0.002, 0.003])
    def fake_time_step(config, task, batch, repeats):
      return next(times)  # StopIteration at the third row: the process dies there
    step_time.time_step = fake_time_step
    sys.argv = ["step_time.py", "--models=mlp", "--fogzo_n=1,2", "--nspsa_n=",
                "--out=" + sys.argv[1]]
    app.run(step_time.main)
""")


def test_rows_measured_before_a_failure_are_on_disk(tmp_path):
  out = tmp_path / "rows.json"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "bench")]))
  proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and "StopIteration" in proc.stderr
  saved = json.loads(out.read_text())
  assert [(r["estimator"], r["n"]) for r in saved["rows"]] == [("ste", 1), ("fogzo", 1)]
  assert [r["step_ms"] for r in saved["rows"]] == [2.0, 3.0]
  assert saved["rows"][1]["ratio_to_ste"] == 1.5 and "jax" in saved["machine"]
  assert [p.name for p in tmp_path.iterdir()] == ["rows.json"]  # no temporary file left


# The timed step records the estimator config it was given.
DIFFERENCE_SCRIPT = textwrap.dedent("""
    import json, sys
    from absl import app
    import step_time
    seen = []
    def fake_time_step(config, task, batch, repeats):
      seen.append(config.estimator.to_dict())
      return 0.002
    step_time.time_step = fake_time_step
    extra = sys.argv[4:]
    sys.argv = ["step_time.py", "--models=" + sys.argv[3], "--fogzo_n=1", "--nspsa_n=",
                "--fogzo_difference=" + sys.argv[2], "--gradient_noise", "--out=" + sys.argv[1]]
    sys.argv += extra
    try:
      app.run(step_time.main)
    finally:
      print("SEEN" + json.dumps(seen))
""")


def test_ste_linear_and_gradient_noise_rows(tmp_path):
  """--fogzo_difference=loss,ste_linear times the ablation once per n (no evaluation mode);
  --gradient_noise adds the control's row; a bad difference is refused."""
  out = tmp_path / "rows.json"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "bench")]))
  proc = subprocess.run([sys.executable, "-c", DIFFERENCE_SCRIPT, str(out), "loss,ste_linear",
                         "mlp"], env=env, cwd=tmp_path, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr
  rows = json.loads(out.read_text())["rows"]
  assert [(r["estimator"], r["evaluation"], r["difference"], r["forward_passes"])
          for r in rows] == [("ste", "", "", 3), ("fogzo", "vmap", "loss", 5),
                             ("fogzo", "", "ste_linear", 3), ("gradient_noise", "", "", 3)]
  seen = json.loads(proc.stdout.split("SEEN")[-1])
  assert [s.get("difference", "loss") for s in seen] == ["loss", "loss", "ste_linear", "loss"]
  assert seen[-1]["kind"] == "gradient_noise" and seen[-1]["noise_share"] == 0.3
  proc = subprocess.run([sys.executable, "-c", DIFFERENCE_SCRIPT, str(out), "linear", "mlp"],
                        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2  # a bad flag: one line, not the usage text
  assert proc.stderr.strip().splitlines()[-1] == (
      "step_time.py: --fogzo_difference: 'linear' is not one of loss, ste_linear")


def test_skip_zero_grad_adds_the_recommended_rows(tmp_path):
  """--skip_zero_grad times each ste_linear row and the gradient-noise row a second time with
  skip_zero_grad=True and the study's noise share; the other rows keep it off."""
  out = tmp_path / "rows.json"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "bench")]))
  proc = subprocess.run([sys.executable, "-c", DIFFERENCE_SCRIPT, str(out), "loss,ste_linear",
                         "mlp", "--skip_zero_grad"], env=env, cwd=tmp_path, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  rows = json.loads(out.read_text())["rows"]
  assert [(r["estimator"], r["difference"], r["skip_zero_grad"]) for r in rows] == [
      ("ste", "", False), ("fogzo", "loss", False), ("fogzo", "ste_linear", False),
      ("fogzo", "ste_linear", True), ("gradient_noise", "", False), ("gradient_noise", "", True)]
  seen = json.loads(proc.stdout.split("SEEN")[-1])
  assert [s.get("skip_zero_grad", False) for s in seen] == [False] * 3 + [True, False, True]
  assert seen[3]["noise_share"] == 0.3 and seen[3]["difference"] == "ste_linear"
  assert "| yes |" in proc.stdout


def test_an_empty_nspsa_n_drops_the_nspsa_rows_of_every_model(tmp_path):
  """--nspsa_n= means no n-SPSA row, for the other models too (a non-empty list is the MLP's n;
  the other models use 1 and 16)."""
  out = tmp_path / "rows.json"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "bench")]))
  proc = subprocess.run([sys.executable, "-c", DIFFERENCE_SCRIPT, str(out), "loss", "llama_30m"],
                        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  rows = json.loads(out.read_text())["rows"]
  assert [r["estimator"] for r in rows] == ["ste", "fogzo", "gradient_noise"]
