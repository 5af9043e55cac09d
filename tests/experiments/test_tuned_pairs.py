"""experiments/tuned_pairs.py: the edge rule that picks the baseline's rate, and the queue."""

import datetime
import json
import os
import subprocess
import sys
import time

import pytest

import tuned_pairs

from fogzo_jax.train.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_choose_rate_runs_one_rate_beyond_an_edge_then_picks_the_best_of_all():
  grid = (1e-3, 3e-3)
  # the best at the upper edge: 9e-3 must run before anything is chosen
  assert tuned_pairs.choose_rate({1e-3: 6.2, 3e-3: 6.1}, grid, True) == (None, 9e-3)
  assert tuned_pairs.choose_rate({1e-3: 6.2, 3e-3: 6.1, 9e-3: 6.3}, grid, True) == (3e-3, None)
  assert tuned_pairs.choose_rate({1e-3: 6.2, 3e-3: 6.1, 9e-3: 6.0}, grid, True) == (9e-3, None)
  # the lower edge, and higher is better (accuracy)
  assert tuned_pairs.choose_rate({1e-3: 0.9, 3e-3: 0.8}, grid, False) == (None, 3.33e-4)
  assert tuned_pairs.choose_rate({1e-3: 0.9, 3e-3: 0.8, 3.33e-4: 0.95}, grid, False) == (
      3.33e-4, None)
  # an inner best needs nothing more; no edge rule: the grid's best wherever it is
  assert tuned_pairs.choose_rate({1: 2.0, 2: 1.0, 3: 3.0}, (1, 2, 3), True) == (2, None)
  assert tuned_pairs.choose_rate({1e-3: 6.2, 3e-3: 6.1}, grid, True, factor=None) == (3e-3, None)
  with pytest.raises(ValueError, match="not finished"):
    tuned_pairs.choose_rate({1e-3: 6.2}, grid, True)


def test_every_plan_builds_train_commands_with_its_flags_and_the_rate():
  for name, plan in tuned_pairs.PLANS.items():
    assert list(plan.rates) == sorted(plan.rates), name
    assert not set(plan.tune_seeds) & set(plan.seeds), name  # the test's seeds are fresh
    for setting in plan.settings:
      argv = tuned_pairs.command(plan, setting, 3e-3 if plan.rates else None, 7, "/w")
      assert argv[1].endswith("train.py") and argv[2] == f"--config={plan.config}"
      rates = [a for a in argv if a.startswith("--config.optimizer.learning_rate=")]
      assert rates and "--config.seed=7" in argv, (name, setting)
      if plan.rates and not tuned_pairs._names_rate(plan.settings[setting]):
        assert rates == ["--config.optimizer.learning_rate=0.003"], (name, setting)
      assert argv[-1] == "--workdir=/w"
      assert all(a.startswith("--config.") for a in argv[3:-1])
  argv = tuned_pairs.command(tuned_pairs.PLANS["118"], "ste_clip", 1e-3, 290, "/w")
  assert "--config.quant.bits=4" in argv and "--config.optimizer.clip_to_range=True" in argv


def test_a_setting_keeps_its_own_rate_and_a_plan_without_stage_1_must_name_one():
  plan = tuned_pairs.Plan(
      config="configs/llama.py:9m", overrides=("estimator.kind=ste",), rates=(1e-3, 3e-3),
      tune_seeds=(0,), settings={"ste": (), "ste_fast": ("optimizer.learning_rate=1e-2",)},
      seeds=(5,), metric="val_perplexity", lower_is_better=True, root="runs/x")
  base = sweep_config(plan)
  tuned = tuned_pairs.sweep.apply_overrides(base.copy_and_resolve_references(),
                                            tuned_pairs.overrides(plan, "ste", 3e-3, 5))
  own = tuned_pairs.sweep.apply_overrides(base.copy_and_resolve_references(),
                                          tuned_pairs.overrides(plan, "ste_fast", 3e-3, 5))
  assert tuned.optimizer.learning_rate == 3e-3 and own.optimizer.learning_rate == 1e-2
  # no stage 1: the rate comes from the plan's own flags, and the tuner does nothing
  fixed = tuned_pairs.PLANS["122"]
  assert tuned_pairs.tune(fixed, 1, None) is None
  recorded = tuned_pairs.sweep.apply_overrides(sweep_config(fixed),
                                               tuned_pairs.overrides(fixed, "ste_tanh", None, 340))
  assert recorded.optimizer.learning_rate == 6e-3 and recorded.quant.ste == "tanh"
  with pytest.raises(ValueError, match=r"settings without it: \['ste'\]"):
    tuned_pairs.Plan(config=plan.config, overrides=(), rates=(), tune_seeds=(),
                     settings=plan.settings, seeds=(5,), metric="val_perplexity",
                     lower_is_better=True, root="runs/x")
  # a grid with a rate in the plan's own flags, or with no seeds to tune on, is refused
  for overrides, tune_seeds in ((("optimizer.learning_rate=1e-3",), (0,)), ((), ())):
    with pytest.raises(ValueError, match="stage 1's grid"):
      tuned_pairs.Plan(config=plan.config, overrides=overrides, rates=(1e-3,),
                       tune_seeds=tune_seeds, settings=plan.settings, seeds=(5,),
                       metric="val_perplexity", lower_is_better=True, root="runs/x")


def sweep_config(plan):
  return tuned_pairs.sweep.load_config(os.path.join(ROOT, plan.config))


def test_run_all_skips_finished_folders_and_stops_a_run_at_the_deadline(tmp_path):
  done = tmp_path / "done_s0"
  done.mkdir()
  (done / "summary.json").write_text(json.dumps({"val_perplexity": 5.0}))
  writes = tmp_path / "writes_s0"
  write = [sys.executable, "-c", "import json, os, sys; os.makedirs(sys.argv[1]); "
           "json.dump({'val_perplexity': 4.0}, open(sys.argv[1] + '/summary.json', 'w'))",
           str(writes)]
  sleeps = tmp_path / "sleeps_s0"
  never = [sys.executable, "-c", "raise SystemExit('must not run: its folder is finished')"]
  jobs = [(never, str(done)), (write, str(writes)),
          ([sys.executable, "-c", "import time; time.sleep(60)"], str(sleeps))]
  start = time.monotonic()
  deadline = datetime.datetime.now() + datetime.timedelta(seconds=8)
  assert tuned_pairs.run_all(jobs, 2, deadline) == 2  # the finished one and the written one
  assert time.monotonic() - start < 40  # the sleeper was stopped at the deadline
  assert not (sleeps / "summary.json").exists()
  assert not (tmp_path / "done_s0.log").exists()  # a finished folder's command never started
  # past the deadline nothing starts
  past = datetime.datetime.now() - datetime.timedelta(seconds=1)
  assert tuned_pairs.run_all([(write, str(tmp_path / "late_s0"))], 1, past) == 0
  assert not (tmp_path / "late_s0").exists()


@pytest.mark.parametrize("args, words", [
    (["--plan=nope"], "--plan: 'nope' is not one of 118"),
    (["--plan=118", "--deadline=tomorrow"], "--deadline: 'tomorrow' is not an ISO time"),
])
def test_bad_flags_end_with_one_line_and_exit_2(args, words):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "tuned_pairs.py"),
                        *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
  assert out.returncode == 2, out.stderr
  (line,) = out.stderr.strip().splitlines()
  assert line.startswith(f"tuned_pairs.py: {words}")


def test_a_finished_folder_of_another_config_is_refused_before_anything_runs(tmp_path):
  plan = tuned_pairs.PLANS["118"]
  config = tuned_pairs.sweep.apply_overrides(
      tuned_pairs.sweep.load_config(os.path.join(ROOT, plan.config)),
      tuned_pairs.overrides(plan, "ste", 1e-3, 290))
  same, other = tmp_path / "ste_s290", tmp_path / "ste_s291"
  for folder, seed in ((same, 290), (other, 291)):
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    config.seed = seed
    (folder / "config.json").write_text(config.to_json())
  config.quant.bits = 2  # the recorded run of seed 291 is a 2-bit one
  (other / "config.json").write_text(config.to_json())
  argv, workdir = tuned_pairs.jobs(plan, [("ste", 1e-3, 290, str(same))])[0]
  assert workdir == str(same) and "--config.seed=290" in argv
  with pytest.raises(ConfigError, match="quant.bits"):
    tuned_pairs.jobs(plan, [("ste", 1e-3, 290, str(same)), ("ste", 1e-3, 291, str(other))])
