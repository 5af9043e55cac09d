"""experiments/where_fogzo_helps.py: the study's run order and its decision rule."""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest
from absl import app

import where_fogzo_helps as study

from fogzo_jax import models
from fogzo_jax.models import resolve_patch_size
from fogzo_jax.models.mlp import MLP
from fogzo_jax.quant.layers import QuantSpec, quantized_mask
from fogzo_jax.train import config as config_lib
from fogzo_jax.train import sweep


def _quantized_weights(variables) -> int:
  """How many parameters the estimators perturb (``quantized_mask``), as the models' descriptions
  count them."""
  mask = quantized_mask(variables["params"], variables["quant"])
  return sum(x.size for x, m in zip(jax.tree_util.tree_leaves(variables["params"]),
                                    jax.tree_util.tree_leaves(mask)) if m)


def test_job_order_setting_by_setting_or_seed_by_seed():
  variants = {"ste": [], "a": [], "b": []}
  assert study.job_order(variants, (3, 4)) == [("ste", 3), ("ste", 4), ("a", 3), ("a", 4),
                                               ("b", 3), ("b", 4)]
  # --settings: only those, in the given order, all settings of a seed before the next seed
  assert study.job_order(variants, (3, 4), ["b", "ste"]) == [("b", 3), ("ste", 3), ("b", 4),
                                                             ("ste", 4)]
  assert study.job_order(variants, (3, 4), ["b", "ste"], "1/2") == [("ste", 3), ("ste", 4)]
  with pytest.raises(app.UsageError, match="--settings: c not a setting.*allowed: ste, a, b"):
    study.job_order(variants, (3,), ["a", "c"])
  for bad in ("2/2", "x", "1"):
    with pytest.raises(app.UsageError, match="--shard"):
      study.job_order(variants, (3,), None, bad)


def test_paired_t_decision_rule():
  t, critical, verdict = sweep.paired_t([1.0, 2.0, 3.0])
  assert t == pytest.approx(2.0 / (1.0 / 3 ** 0.5)) and critical == pytest.approx(4.303, abs=1e-3)
  assert verdict == "tie"  # t = 3.46 < 4.303 with two degrees of freedom
  assert sweep.paired_t([1.0, 1.1, 0.9, 1.0, 1.05])[1:] == (pytest.approx(2.776, abs=1e-3),
                                                            "better")
  assert sweep.paired_t([-1.0, -1.1, -0.9])[2] == "worse"
  assert sweep.paired_t([0.0, 0.0, 0.0])[2] == "tie"  # no difference is not a win
  with pytest.raises(ValueError, match="at least 2 seeds"):
    sweep.paired_t([1.0])


def test_paired_reads_runs_and_signs_gains(tmp_path, monkeypatch):
  def write(name, seed, ppl):
    os.makedirs(tmp_path / "llama_9m" / "confirm" / f"{name}_s{seed}")
    with open(tmp_path / "llama_9m" / "confirm" / f"{name}_s{seed}" / "summary.json", "w") as f:
      json.dump({"seed": seed, "val_perplexity": ppl}, f)

  monkeypatch.setattr(study, "OUT", str(tmp_path))
  for seed, (ste, fogzo) in zip((3, 4, 5), ((10.0, 9.0), (10.5, 9.4), (10.2, 9.3))):
    write("ste", seed, ste)
    write("paper_rho0.1", seed, fogzo)
  line = study.paired("llama_9m", "ste", "paper_rho0.1")
  assert "per-seed gain +1, +1.1, +0.9" in line  # perplexity: lower is better, gain = STE − FOGZO
  assert line.endswith("paper_rho0.1 beats ste") and "critical 4.303" in line
  assert study.paired("llama_9m", "ste", "paper_rho0") == (  # the missing runs are named
      "paper_rho0 vs ste: not complete (no summary of paper_rho0 seeds 3, 4, 5)")


def test_seeds_flag_and_amendment_12_report(tmp_path, monkeypatch):
  """--seeds replaces the stage's seeds (refused unless integers ≥ 0); the report's seed
  extensions test llama_9m's paper against ste over seeds 3-7 once all ten runs exist
  (amendment 12), and paper_ste_linear against ste on seeds 6-9 and 3-9 and against paper on 3-7
  (amendment 15); amendment 18's two tests wait for their runs; amendment 53's setting at 1e-3
  against STE at 1e-3 on held-out seeds 6-8 and on 3-8."""
  assert study.run_seeds((3, 4, 5)) == (3, 4, 5)
  assert study.run_seeds((3, 4, 5), ["6", "7"]) == (6, 7)
  for bad in (["6", "x"], ["-1"]):
    with pytest.raises(ValueError, match="--seeds: .* integers ≥ 0"):  # a ConfigError: exit 2
      study.run_seeds((3,), bad)
  monkeypatch.setattr(study, "OUT", str(tmp_path))

  def write(name, seed, ppl):
    os.makedirs(tmp_path / "llama_9m" / "confirm" / f"{name}_s{seed}")
    with open(tmp_path / "llama_9m" / "confirm" / f"{name}_s{seed}" / "summary.json", "w") as f:
      json.dump({"seed": seed, "val_perplexity": ppl, "wall_time_s": 1.0}, f)
    with open(tmp_path / "llama_9m" / "confirm" / f"{name}_s{seed}" / "metrics.jsonl", "w") as f:
      f.write(json.dumps({"step": 1000, "step_loss": 1.7, "val_perplexity": ppl}) + "\n")

  gains = (0.1, 0.2, 0.15, 0.12, 0.18)
  for seed, gain in zip((3, 4, 5, 6), gains):
    write("ste", seed, 6.2)
    write("paper", seed, 6.2 - gain)
  tests = lambda: [x.split(" (no summary")[0] for x in study.extended("llama_9m")
                   if x.startswith("- ")]
  assert [x for x in study.extended("llama_9m") if x.startswith("- ")][0] == (
      "- paper vs ste: not complete (no summary of ste seed 7; paper seed 7)")
  write("ste", 7, 6.2)
  write("paper", 7, 6.2 - gains[-1])
  lines = study.extended("llama_9m")
  assert lines[0].startswith("Amendment 12: paper and ste on seeds 3-7")
  assert "critical 2.776" in tests()[0] and tests()[0].endswith("paper beats ste")
  # amendment 15: paper_ste_linear against ste on held-out seeds 6-9, pooled 3-9, and paper 3-7
  assert tests()[1:4] == ["- paper_ste_linear vs ste: not complete"] * 2 + [
      "- paper_ste_linear vs paper: not complete"]
  for seed, gain in zip(range(3, 10), (0.2, 0.1, 0.15, 0.0, 0.1, 0.05, 0.12)):
    write("paper_ste_linear", seed, 6.2 - gain)
    if seed > 7:  # ste 3-7 are written above
      write("ste", seed, 6.2)
  held_out, pooled, versus_paper = tests()[1:4]
  assert tests()[4:6] == ["- paper_ste_linear_ste_lr vs ste: not complete"] * 2  # amendment 18
  assert tests()[6:] == [  # amendment 21: the gradient-noise control on seeds 6-9
      "- gradient_noise_ste_lr vs ste: not complete",
      "- gradient_noise_ste_lr vs paper_ste_linear_ste_lr: not complete",
      # amendment 23: the setting without noise where the STE gradient is 0, seeds 6-9
      "- paper_ste_linear_ste_lr_skip_zero vs ste: not complete",
      "- paper_ste_linear_ste_lr_skip_zero vs paper_ste_linear_ste_lr: not complete",
      # amendment 53: the setting at 1e-3 against STE at 1e-3, held-out 6-8 and pooled 3-8
      "- paper_ste_linear_ste_lr_third vs ste_lr_third: not complete",
      "- paper_ste_linear_ste_lr_third vs ste_lr_third: not complete"]
  assert "critical 3.182" in held_out and held_out.endswith("paper_ste_linear ties with ste")
  assert "critical 2.447" in pooled and pooled.endswith("paper_ste_linear beats ste")
  assert "critical 2.776" in versus_paper
  for seed, loss in zip(range(3, 9), (0.002, 0.064, 0.0, 0.05, 0.06, 0.07)):
    write("ste_lr_third", seed, 5.5)
    write("paper_ste_linear_ste_lr_third", seed, 5.5 + loss)  # level on seed 5, behind elsewhere
  held_out, pooled = tests()[10:]
  assert "critical 4.303" in held_out and held_out.endswith(
      "paper_ste_linear_ste_lr_third loses to ste_lr_third")
  assert "critical 2.571" in pooled and pooled.endswith(
      "paper_ste_linear_ste_lr_third loses to ste_lr_third")
  assert study.extended("mnist") == []


def test_amendment_41_report_and_plot_of_the_fresh_seeds(tmp_path, monkeypatch):
  """llama_9m_long's seed extension (amendments 37, 39, 41): the three settings on seeds 10-14,
  tested as registered (control vs STE, control vs setting, setting vs STE; n = 5), and plotted
  as per-seed gains over STE (gains_extended.png) once STE's five runs exist; amendment 65's
  pair at 1e-3 on seeds 10-12, tested and plotted over STE at 1e-3."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))

  def write(name, seed, ppl):
    folder = tmp_path / "llama_9m_long" / "confirm" / f"{name}_s{seed}"
    os.makedirs(folder)
    (folder / "summary.json").write_text(json.dumps(
        {"seed": seed, "val_perplexity": ppl, "wall_time_s": 1.0}))
    (folder / "metrics.jsonl").write_text(json.dumps(
        {"step": 3000, "step_loss": 1.4, "val_perplexity": ppl}) + "\n")

  path = tmp_path / "gains_extended.png"
  for seed in (10, 11, 12, 13):
    write("ste", seed, 4.9)
  study.plot_gains(str(path), extensions=True)
  assert not path.exists()  # STE's seed 14 missing: no panel, no figure
  write("ste", 14, 4.9)
  for seed, (setting, control) in zip(range(10, 15), ((0.09, 0.02), (0.12, 0.11), (0.11, 0.13),
                                                     (0.10, 0.05), (0.13, 0.08))):
    write("paper_ste_linear_ste_lr", seed, 4.9 - setting)
    write("gradient_noise_ste_lr", seed, 4.9 - control)
  lines = study.extended("llama_9m_long")
  assert lines[0].startswith("Amendments 37, 39 and 41 (CPU)")
  assert "seeds 3, 4, 5, 6, 7, stands" in lines[0]  # the H200's registered test stands
  at_a_third = next(i for i, x in enumerate(lines) if x.startswith("Amendment 65 (CPU)"))
  control, versus_setting, setting = [x for x in lines[:at_a_third] if x.startswith("- ")]
  assert control.startswith("- gradient_noise_ste_lr vs ste: per-seed gain +0.02, +0.11")
  assert "critical 2.776" in control and control.endswith("gradient_noise_ste_lr beats ste")
  assert versus_setting.startswith("- gradient_noise_ste_lr vs paper_ste_linear_ste_lr: "
                                   "per-seed gain -0.07, -0.01, +0.02, -0.05, -0.05")
  assert setting.endswith("paper_ste_linear_ste_lr beats ste")
  study.plot_gains(str(path), extensions=True)
  assert path.stat().st_size > 10_000
  # amendment 65: both at 1e-3 on seeds 10-12, tested once the three pairs exist
  assert lines[-2] == ("- paper_ste_linear_ste_lr_third vs ste_lr_third: not complete (no summary "
                       "of ste_lr_third seeds 10, 11, 12; paper_ste_linear_ste_lr_third seeds "
                       "10, 11, 12)")
  for seed, gain in zip((10, 11, 12), (0.03, -0.02, 0.01)):
    write("ste_lr_third", seed, 4.8)
    write("paper_ste_linear_ste_lr_third", seed, 4.8 - gain)
  test = study.extended("llama_9m_long")[-2]
  assert test.startswith("- paper_ste_linear_ste_lr_third vs ste_lr_third: per-seed gain +0.03, "
                         "-0.02, +0.01") and "critical 4.303" in test
  assert test.endswith("paper_ste_linear_ste_lr_third ties with ste_lr_third")
  # its panel is of gains over STE at 1e-3 (its test's baseline), not over the config's STE
  fresh, third = study.extension_panels()
  assert fresh[2] == "ste" and set(fresh[3]) == {"gradient_noise_ste_lr",
                                                 "paper_ste_linear_ste_lr"}
  assert third[:3] == ("llama_9m_long, seeds 10-12", "val_perplexity", "ste_lr_third")
  assert list(third[3]) == ["paper_ste_linear_ste_lr_third"]
  assert third[3]["paper_ste_linear_ste_lr_third"] == pytest.approx([0.03, -0.02, 0.01])


def test_ablation_settings(monkeypatch):
  """Amendment 13: paper's confirmed setting with and without the measured difference, STE at
  its own and at paper's rate; only on the small LLaMA."""
  monkeypatch.setattr(study, "choose", lambda model: {
      "ste": ["estimator.kind=ste", "optimizer.learning_rate=0.001"],
      "paper": ["estimator.kind=fogzo", "estimator.noise_share=0.3",
                "optimizer.learning_rate=0.003", "# paper_rho0.3_lr0.003"]})
  variants, seeds = study.stage_variants("llama_tiny", "ablation")
  assert seeds == (3, 4, 5, 6, 7)
  assert variants["paper_ste_linear"] == variants["paper"] + ["estimator.difference=ste_linear"]
  assert variants["ste_at_paper_lr"] == ["estimator.kind=ste", "optimizer.learning_rate=0.003"]
  assert not any(o.startswith("#") for o in variants["paper"])
  with pytest.raises(app.UsageError, match="only for llama_tiny"):
    study.stage_variants("mnist", "ablation")


def test_recipe_settings(monkeypatch):
  """Amendment 19: each smaller model's STE setting and amendment 17's setting (the small
  LLaMA's ρ, ste_linear) at that same rate; resnet8 at the config's rate on seeds 3-5."""
  monkeypatch.setattr(study, "best_variant", lambda model: "paper")
  monkeypatch.setattr(study, "ste_lr", lambda model: 1e-3)
  monkeypatch.setattr(study, "choose", lambda model: study.transferred(model)
                      if model == "resnet8" else {
      "ste": ["estimator.kind=ste", "optimizer.learning_rate=0.006" if model == "mnist"
              else "optimizer.learning_rate=0.001"],
      "paper": ["estimator.kind=fogzo", "estimator.noise_share=0.3",
                "optimizer.learning_rate=0.003", "# paper_rho0.3_lr0.003"]})
  variants, seeds = study.stage_variants("mnist", "recipe")
  assert seeds == (3, 4, 5, 6, 7) and variants["ste"][-1] == "optimizer.learning_rate=0.006"
  assert variants["paper_ste_linear_ste_lr"] == [
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.006",
      "estimator.difference=ste_linear"]
  assert variants["gradient_noise_ste_lr"] == [  # amendment 20's control, same ρ and rate
      "estimator.kind=gradient_noise", "estimator.noise_share=0.3",
      "optimizer.learning_rate=0.006"]
  variants, seeds = study.stage_variants("resnet8", "recipe")
  assert seeds == (3, 4, 5) and variants["ste"] == ["estimator.kind=ste"]
  assert "optimizer.learning_rate=0.001" in variants["paper_ste_linear_ste_lr"]
  with pytest.raises(app.UsageError, match="only for mnist, llama_tiny, resnet8"):
    study.stage_variants("llama_9m", "recipe")


def test_long_llama_9m_settings_and_seeds(monkeypatch):
  """Amendment 9: LLaMA-9M for 3,000 steps runs STE, the transferred variant (ρ 0.3 at 3x the
  config's rate), ρ 0.1 at the config's rate and STE at 3x, on seeds 3-7."""
  monkeypatch.setattr(study, "ste_lr", lambda model: 1e-3)
  monkeypatch.setattr(study, "best_variant", lambda model: "paper")
  monkeypatch.setattr(study, "choose", lambda model: {"paper": [
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.003",
      "# paper_rho0.3_lr0.003"]} if model == "llama_tiny" else study.transferred(model))
  variants, seeds = study.stage_variants("llama_9m_long", "confirm")
  assert seeds == (3, 4, 5, 6, 7) and study.confirm_seeds("llama_9m") == (3, 4, 5)
  assert list(variants) == ["ste", "paper", "paper_rho0.1", "paper_ste_linear_ste_lr",
                            "gradient_noise_ste_lr", "paper_ste_linear", "ste_lr3x",
                            "ste_lr_third", "paper_ste_linear_ste_lr_third"]
  # amendment 36 added the fourth, amendment 39 the fifth
  assert variants["paper"] == ["estimator.kind=fogzo", "estimator.noise_share=0.3",
                               "optimizer.learning_rate=0.009"]  # 3x the config's 3e-3
  assert "optimizer.learning_rate=0.009" in variants["ste_lr3x"]
  assert variants["paper_ste_linear"] == variants["paper"] + ["estimator.difference=ste_linear"]
  nine = study.stage_variants("llama_9m", "confirm")[0]
  assert "paper_rho0" in nine  # amendment 14: the ablation of amendment 13 at real size
  assert nine["paper_ste_linear"] == nine["paper"] + ["estimator.difference=ste_linear"]
  assert nine["paper_ste_linear_ste_lr"] == [  # amendment 17: the ablation at STE's rate
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.003",
      "estimator.difference=ste_linear"]
  assert nine["gradient_noise_ste_lr"] == [  # amendment 20: the gradient-noise control
      "estimator.kind=gradient_noise", "estimator.noise_share=0.3", "optimizer.learning_rate=0.003"]
  # amendment 50: STE at a third of its rate, at 9M only
  assert nine["ste_lr_third"] == ["estimator.kind=ste", "optimizer.learning_rate=0.001"]
  assert nine["paper_ste_linear_ste_lr_third"] == [  # amendment 51: the setting at that rate
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.001",
      "estimator.difference=ste_linear"]
  # amendment 54: STE at a ninth of the config's rate, at 1,000 steps only
  assert nine["ste_lr_ninth"] == ["estimator.kind=ste", "optimizer.learning_rate=0.000333333"]
  assert "ste_lr_ninth" not in variants
  # amendment 52: both at 3,000 steps too
  assert all(variants[k] == nine[k] for k in ("ste_lr_third", "paper_ste_linear_ste_lr_third"))
  config = study.base_config("llama_9m_long")
  assert config.num_train_steps == 3000 and config.optimizer.learning_rate == 3e-3


def test_gpu_job_queue_is_amendment_36s_tiers_seed_by_seed():
  """experiments/gpu_job.sh (amendments 10, 16, 36, 52) runs one (setting, seed) per job: first
  amendment 52's STE and setting at 1e-3, then tier 1 (STE, the README's setting, the ablation at
  3x, the paper's estimator at 3x) seed by seed over seeds 3-7, then tier 2 (STE at 3x, ρ 0.1),
  then tier 3 (amendment 39's gradient-noise control); together every llama_9m_long setting,
  each once."""
  script = os.path.join(study.ROOT, "experiments", "gpu_job.sh")
  assert subprocess.run(["bash", "-n", script]).returncode == 0  # the script parses
  lines = subprocess.run(
      ["bash", "-c", f"eval \"$(sed -n '/^MODEL=/,/^SEEDS=/p;/^queue() {{/,/^}}/p' {script})\"; "
                     "queue"], capture_output=True, text=True, check=True).stdout.split("\n")
  jobs = [(name, int(seed)) for name, seed in (line.split() for line in lines if line)]
  tier0 = ["ste_lr_third", "paper_ste_linear_ste_lr_third"]  # amendment 52: both at 1e-3
  tier1 = ["ste", "paper_ste_linear_ste_lr", "paper_ste_linear", "paper"]
  tier2 = ["ste_lr3x", "paper_rho0.1"]
  tier3 = ["gradient_noise_ste_lr"]  # amendment 39's control
  assert jobs == [(s, seed) for tier in (tier0, tier1, tier2, tier3)
                  for seed in (3, 4, 5, 6, 7) for s in tier]
  variants, seeds = study.stage_variants("llama_9m_long", "confirm")  # the committed choices
  assert sorted(tier0 + tier1 + tier2 + tier3) == sorted(variants) and seeds == (3, 4, 5, 6, 7)
  assert variants["gradient_noise_ste_lr"] == [
      "estimator.kind=gradient_noise", "estimator.noise_share=0.3", "optimizer.learning_rate=0.003"]
  assert variants["paper_ste_linear_ste_lr"] == [  # amendment 36: the README's setting at 3,000
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.003",
      "estimator.difference=ste_linear"]
  # Another model's job: its stage, tiers and seeds from the environment.
  env = {**os.environ, "MODEL": "resnet8_cifar10", "STAGE": "recipe", "SEEDS": "3 4",
         "TIERS": "ste paper_ste_linear_ste_lr|gradient_noise_ste_lr"}
  other = subprocess.run(
      ["bash", "-c", f"eval \"$(sed -n '/^MODEL=/,/^SEEDS=/p;/^queue() {{/,/^}}/p' {script})\"; "
                     "queue"], capture_output=True, text=True, check=True, env=env).stdout
  assert other.split("\n") == ["ste 3", "paper_ste_linear_ste_lr 3", "ste 4",
                               "paper_ste_linear_ste_lr 4", "gradient_noise_ste_lr 3",
                               "gradient_noise_ste_lr 4", ""]


def _prepare_copy(tmp_path):
  """experiments/gpu_prepare.sh copied into a checkout of its own (it works relative to it)."""
  os.makedirs(tmp_path / "repo" / "experiments")
  script = tmp_path / "repo" / "experiments" / "gpu_prepare.sh"
  script.write_text(open(os.path.join(study.ROOT, "experiments", "gpu_prepare.sh")).read())
  return script


def test_gpu_prepare_fills_the_carried_folders_with_one_pinned_version_each(tmp_path):
  """experiments/gpu_prepare.sh makes what gpu_job.sh's lease carries: the pinned wheels in .whl/
  (protobuf in .whl/extra/), earlier wheels replaced, and the CIFAR-10 archives copied from the
  shared data. pip is replaced by a stand-in that records its arguments (no network in tests)."""
  script = _prepare_copy(tmp_path)
  shared = tmp_path / "shared"
  os.makedirs(shared / "images" / "cifar10_jpeg")
  for name in ("cifar10_train_jpg.tar.gz", "cifar10_test_jpg.tar.gz"):
    (shared / "images" / "cifar10_jpeg" / name).write_bytes(name.encode())
  os.makedirs(tmp_path / "repo" / ".whl")
  (tmp_path / "repo" / ".whl" / "grain-0.2.1-py3-none-any.whl").write_text("old")
  bin_dir = tmp_path / "bin"  # python3 -m pip download ... -d DEST PKG==V ... → DEST/PKG==V.whl
  os.makedirs(bin_dir)
  (bin_dir / "python3").write_text(
      "#!/usr/bin/env bash\necho \"$*\" >> \"$PIP_LOG\"\nwhile [ $# -gt 0 ]; do\n"
      "  case $1 in -d) dest=$2; shift;; *==*) touch \"$dest/$1.whl\";; esac; shift\ndone\n")
  (bin_dir / "python3").chmod(0o755)
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
         "PIP_LOG": str(tmp_path / "pip.log")}
  out = subprocess.run(["bash", str(script), str(shared)], capture_output=True, text=True,
                       env=env, timeout=60)
  assert out.returncode == 0, out.stderr
  repo = tmp_path / "repo"
  assert sorted(os.listdir(repo / ".whl")) == [
      "array-record==0.8.6.whl", "extra", "grain==0.2.18.whl", "ml-collections==1.1.0.whl",
      "portpicker==1.6.0.whl", "tensorboardX==2.6.5.whl"]
  assert os.listdir(repo / ".whl" / "extra") == ["protobuf==7.36.2.whl"]
  assert (repo / "data" / "cifar10_jpeg" / "cifar10_test_jpg.tar.gz").read_bytes() == (
      b"cifar10_test_jpg.tar.gz")
  calls = open(tmp_path / "pip.log").read().splitlines()
  assert len(calls) == 2 and all("--no-deps --only-binary=:all: --python-version 3.12" in c
                                 for c in calls)
  assert 'carry [".whl", "data/cifar10_jpeg"]' in out.stdout


def test_gpu_prepare_refuses_a_missing_data_folder_before_writing_anything(tmp_path):
  """A wrong shared-data folder is one line naming the missing archive and exit 1, before any
  download or write."""
  script = _prepare_copy(tmp_path)
  out = subprocess.run(["bash", str(script), str(tmp_path / "nowhere")], capture_output=True,
                       text=True, timeout=60)
  assert out.returncode == 1 and out.stdout == ""
  assert out.stderr.count("\n") == 1 and "cifar10_train_jpg.tar.gz is missing" in out.stderr
  assert sorted(os.listdir(tmp_path / "repo")) == ["experiments"]


def test_gpu_job_keeps_autotuning_for_convolutional_models():
  """Amendment 85: a ResNet job (amendment 90: and a DeiT job) tries XLA flags that keep
  autotuning (only the Triton GEMM fusions off, then XLA's defaults); every other job tries
  amendment 10's flags first, which turn it off."""
  text = open(os.path.join(study.ROOT, "experiments", "gpu_job.sh")).read()
  block = text[text.index("case $MODEL in"):text.index("esac") + len("esac")]

  def candidates(model):
    return subprocess.run(["bash", "-c", block + '\nprintf "%s\\n" "${CANDIDATES[@]}"'],
                          env={**os.environ, "MODEL": model}, capture_output=True, text=True,
                          check=True).stdout.split("\n")[:-1]

  assert candidates("resnet18_cifar10") == ["--xla_gpu_enable_triton_gemm=false", ""]
  assert candidates("deit_tiny_cifar10") == ["--xla_gpu_enable_triton_gemm=false", ""]
  assert candidates("llama_20m") == [
      "--xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=0",
      "--xla_gpu_autotune_level=0", ""]


def test_gpu_job_leaves_out_the_runs_an_earlier_lease_finished(tmp_path):
  """With DONE (the carried runs/gpu folder of an earlier lease) the GPU job copies the finished
  runs in and queues only the rest; an unfinished one (no summary.json) runs again, and a DONE
  without the model's folder stops the job with one line."""
  script = os.path.join(study.ROOT, "experiments", "gpu_job.sh")
  part = f"eval \"$(sed -n '/^MODEL=/,/^SEEDS=/p;/^queue() {{/,/^fi$/p' {script})\""
  done = tmp_path / "earlier" / "llama_9m_long" / "confirm"
  for name, finished in (("ste_s3", True), ("paper_s3", False)):
    (done / name).mkdir(parents=True)
    (done / name / "metrics.jsonl").write_text("")
    if finished:
      (done / name / "summary.json").write_text("{}")
  work = tmp_path / "checkout"
  work.mkdir()
  (tmp_path / "out" / "logs").mkdir(parents=True)
  env = {**os.environ, "DONE": str(tmp_path / "earlier"), "OUT": str(tmp_path / "out")}
  out = subprocess.run(["bash", "-c", part + "; queue"], cwd=work, capture_output=True,
                       text=True, check=True, env=env)
  jobs = [line for line in out.stdout.split("\n") if line and not line.startswith("DONE")]
  assert "ste 3" not in jobs and "paper 3" in jobs and len(jobs) == 9 * 5 - 1  # 9 settings
  assert "1 finished runs" in out.stdout and out.stderr == ""
  assert (tmp_path / "out" / "logs" / "copied.txt").read_text() == "ste_s3\n"  # for summary.txt
  assert (work / "runs/gpu/llama_9m_long/confirm/ste_s3/summary.json").exists()
  assert not (work / "runs/gpu/llama_9m_long/confirm/paper_s3").exists()
  bad = subprocess.run(["bash", "-c", part], cwd=work, capture_output=True, text=True,
                       env={**os.environ, "DONE": str(tmp_path / "nowhere")})
  assert bad.returncode == 1 and "has no llama_9m_long/confirm folder" in bad.stdout


def running(pid: int) -> bool:
  """Whether process ``pid`` exists and is not a zombie (one no parent has reaped yet)."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def test_gpu_job_deadline_stops_its_own_runs_and_nothing_else(tmp_path):
  """At the grid's deadline the GPU job stops the runs it started (timeout's process group) and
  leaves alone another process running the same model (a pattern kill once stopped a CPU grid's
  run during a smoke test)."""
  script = os.path.join(study.ROOT, "experiments", "gpu_job.sh")
  fake = tmp_path / "bin"
  fake.mkdir()
  (fake / "python3").write_text("#!/bin/bash\necho $$ >> \"$PIDS\"\nexec sleep 60\n")
  (fake / "python3").chmod(0o755)
  (tmp_path / "logs").mkdir()
  decoy = subprocess.Popen(["bash", "-c", "exec -a 'python3 experiments/where_fogzo_helps.py "
                            "--model=resnet8_cifar10 --stage=recipe' sleep 60"])
  try:
    grid = (f"queue() {{ printf 'ste 3\\nste 4\\n'; }}; START=$(date +%s); "
            f"eval \"$(sed -n '/^queue | XLA_FLAGS/,/^if alive/p' {script})\"")
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "PIDS": str(tmp_path / "pids"),
           "GRID_S": "2", "WORKERS": "2", "MODEL": "resnet8_cifar10", "STAGE": "recipe",
           "OUT": str(tmp_path)}
    start = time.monotonic()
    subprocess.run(["bash", "-c", grid], env=env, check=True, timeout=60, cwd=tmp_path)
    assert time.monotonic() - start < 10  # the runs were gone at once: no 15 s wait
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2  # both runs had started
    assert not any(map(running, pids))  # stopped at the deadline
    assert decoy.poll() is None  # the same model's process outside the job runs on
  finally:
    decoy.kill()
    decoy.wait()


def test_later_stages_run_from_the_committed_choices_without_tuning_runs(tmp_path, monkeypatch):
  """On a checkout without the tuning runs (seeds 0-2), the confirm and recipe stages take the
  committed record of the choices: the settings the study ran (the page, amendments 1-21)."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  assert study.ste_lr("mnist") == 0.006 and study.ste_lr("llama_tiny") == 0.001
  assert study.best_variant("llama_9m") == "paper"
  nine = study.stage_variants("llama_9m", "confirm")[0]
  assert nine["paper"] == ["estimator.kind=fogzo", "estimator.noise_share=0.3",
                           "optimizer.learning_rate=0.009"]
  assert nine["paper_ste_linear_ste_lr"] == [
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.003",
      "estimator.difference=ste_linear"]
  assert study.stage_variants("mnist", "recipe")[0]["ste"] == [
      "estimator.kind=ste", "optimizer.learning_rate=0.006"]
  with pytest.raises(app.UsageError, match="not finished"):
    study.stage_variants("llama_tiny", "lr")  # a tuning stage still needs its runs
  monkeypatch.setattr(study, "CHOICES", str(tmp_path / "none.json"))
  with pytest.raises(app.UsageError, match="run its tuning stages first"):
    study.choose("mnist")


def _fake_tuning_runs(out, model, value, stages=None):
  """Every tuning run of ``model`` (seeds 0-2; of ``stages``, by default all its tuning stages):
  a summary with metric ``value(name) + seed/100`` and a one-row metrics.jsonl, enough for the
  report's tables."""
  for stage in stages or ("ste_lr", "grid") + (() if model == "mnist" else ("lr",)):
    for name in study.stage_variants(model, stage)[0]:
      for seed in (0, 1, 2):
        workdir = out / model / stage / f"{name}_s{seed}"
        os.makedirs(workdir)
        metric = value(name) + seed / 100
        (workdir / "summary.json").write_text(json.dumps(
            {study.MODELS[model][2]: metric, "seed": seed, "test_accuracy": 0.9,
             "wall_time_s": 20.0}))
        (workdir / "metrics.jsonl").write_text(json.dumps({"step": 1, "step_loss": metric}) + "\n")


def test_tuning_runs_win_over_the_record_and_record_choices_rewrites_it(tmp_path, monkeypatch,
                                                                        capsys):
  runs = tmp_path / "runs"
  monkeypatch.setattr(study, "OUT", str(runs))
  monkeypatch.setattr(study, "CHOICES", str(tmp_path / "choices.json"))
  with open(study.CHOICES, "w") as f:  # a record that disagrees with the runs below
    json.dump({"models": {"mnist": {"chosen": {"ste": ["estimator.kind=ste",
                                                       "optimizer.learning_rate=0.006"]},
                                    "best_variant": "paper"}}}, f)
  value = lambda name: (0.5 if name == "ste_lr0.002" else 0.7 if name == "smoothed_rho1_lr0.002"
                        else 1.0)
  for model in ("mnist", "llama_tiny"):
    _fake_tuning_runs(runs, model, value)
  capsys.readouterr()
  chosen = study.choose("mnist")
  assert chosen["ste"] == ["estimator.kind=ste", "optimizer.learning_rate=0.002"]
  assert chosen["smoothed"][-1] == "# smoothed_rho1_lr0.002"
  assert study.best_variant("mnist") == "smoothed"
  assert "differs from" in capsys.readouterr().err  # the runs win, the disagreement is said
  study.record_choices()
  capsys.readouterr()
  assert study.choose("mnist") == chosen and not capsys.readouterr().err
  monkeypatch.setattr(study, "OUT", str(tmp_path / "empty"))  # the record alone gives the same
  assert study.choose("mnist") == chosen and study.best_variant("mnist") == "smoothed"
  assert study.ste_lr("mnist") == 0.002


def test_amendment_22_runs_the_recipe_with_lsq_and_quest_on_fresh_seeds(tmp_path, monkeypatch):
  """LLaMA-9M with LSQ and with QuEST (weights and activations): STE and amendment 17's setting
  at the config's rate on seeds 10-12, and no other stage."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  for model, kind in (("llama_9m_lsq", "lsq"), ("llama_9m_quest", "quest")):
    variants, seeds = study.stage_variants(model, "recipe")
    assert seeds == (10, 11, 12) and list(variants)[:2] == ["ste", "paper_ste_linear_ste_lr"]
    assert "optimizer.learning_rate=0.003" in variants["paper_ste_linear_ste_lr"]
    config = study.base_config(model)
    assert config.quant.kind == kind and config.num_train_steps == 1000
  assert study.base_config("llama_9m_quest").quant.activations
  with pytest.raises(app.UsageError, match="runs only --stage=recipe"):
    study.run_stage("llama_9m_lsq", "confirm")
  # amendment 23: with LSQ also the setting without noise where the STE gradient is 0 and the
  # gradient-noise control, at the same rate and ρ
  lsq = study.stage_variants("llama_9m_lsq", "recipe")[0]
  assert list(lsq) == ["ste", "paper_ste_linear_ste_lr", study.SKIP_ZERO, "gradient_noise_ste_lr",
                       "ste_lr_third", study.SKIP_ZERO_THIRD]  # amendments 57 and 58
  assert lsq["ste_lr_third"] == ["estimator.kind=ste", "optimizer.learning_rate=0.001"]
  assert lsq[study.SKIP_ZERO_THIRD] == [  # amendment 58: the recommendation at 1e-3
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.001",
      "estimator.difference=ste_linear", "estimator.skip_zero_grad=True"]
  assert lsq[study.SKIP_ZERO] == lsq["paper_ste_linear_ste_lr"] + ["estimator.skip_zero_grad=True"]
  assert lsq["gradient_noise_ste_lr"] == ["estimator.kind=gradient_noise",
                                          "estimator.noise_share=0.3",
                                          "optimizer.learning_rate=0.003"]
  # amendment 27: QuEST gets the gradient-noise control, the same as LSQ's
  quest = study.stage_variants("llama_9m_quest", "recipe")[0]
  assert list(quest)[:3] == ["ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr"]
  assert quest["gradient_noise_ste_lr"] == lsq["gradient_noise_ste_lr"]
  # amendment 56: and STE and the setting at a third of the rate (1e-3), as at fixed scale
  assert {k: quest[k] for k in list(quest)[3:]} == {
      "ste_lr_third": ["estimator.kind=ste", "optimizer.learning_rate=0.001"],
      "paper_ste_linear_ste_lr_third": ["estimator.kind=fogzo", "estimator.noise_share=0.3",
                                        "optimizer.learning_rate=0.001",
                                        "estimator.difference=ste_linear"],
      "ste_lr_ninth": ["estimator.kind=ste", "optimizer.learning_rate=0.000333333"]}  # 59
  fixed = study.stage_variants("llama_9m", "confirm")[0]  # and at fixed scale (seeds 6-9)
  assert fixed[study.SKIP_ZERO][-1] == "estimator.skip_zero_grad=True"
  # amendment 24: LSQ's three settings on seeds 10-14, reported beside the registered tests
  lines = study.extended("llama_9m_lsq", "recipe")
  assert lines[0].startswith("Amendment 24:") and "seeds 10, 11, 12, stands" in lines[0]
  assert [x.split(" (no summary")[0] for x in lines if x.startswith("- ")] == [
      f"- {study.SKIP_ZERO} vs paper_ste_linear_ste_lr: not complete",
      f"- {study.SKIP_ZERO} vs ste: not complete", "- paper_ste_linear_ste_lr vs ste: not complete"]
  assert study.extended("llama_9m_quest", "recipe") == []
  # amendment 67: amendment 63's pair at width 192 on seeds 10-14, beside its test over 10-12
  lines = study.extended("llama_3m_long", "recipe")
  assert lines[0].startswith("Amendment 67:") and "seeds 10, 11, 12, stands" in lines[0]
  assert [x.split(" (no summary")[0] for x in lines if x.startswith("- ")] == [
      "- paper_ste_linear_ste_lr_third vs ste_lr_third: not complete"]


def test_amendment_42_runs_the_recipe_on_cifar10_with_the_control(tmp_path, monkeypatch):
  """ResNet-18 width 8 on CIFAR-10 (the shipped archives): STE, the README's setting and the
  gradient-noise control at the config's rate on seeds 3-7, and no other stage."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  variants, seeds = study.stage_variants("resnet8_cifar10", "recipe")
  assert seeds == (3, 4, 5, 6, 7)
  assert list(variants) == ["ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr"]
  assert variants["paper_ste_linear_ste_lr"] == [
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.001",
      "estimator.difference=ste_linear"]
  config = study.base_config("resnet8_cifar10")
  assert (config.data.name, config.data.data_dir, config.model.width) == (
      "cifar10", study.CIFAR10_DIR, 8)
  assert config.optimizer.learning_rate == 0.001 and config.quant.kind == "fixed"
  if not os.environ.get("FOGZO_CIFAR10_DIR"):  # the shipped archives, beside the checkout
    assert study.CIFAR10_DIR.endswith(os.path.join("shared", "data", "images", "cifar10_jpeg"))
  with pytest.raises(app.UsageError, match=r"runs only --stage=recipe \(amendment 42\)"):
    study.run_stage("resnet8_cifar10", "confirm")
  # amendment 43: the same at full width (a GPU job)
  full, seeds = study.stage_variants("resnet18_cifar10", "recipe")
  assert full == variants and seeds == (3, 4, 5, 6, 7)
  wide = study.base_config("resnet18_cifar10")
  assert wide.model.width == 64 and wide.data == config.data and wide.optimizer == config.optimizer
  # amendment 44: LLaMA-9M's layout and recipe at width 192, STE and the setting at 3e-3
  small, seeds = study.stage_variants("llama_3m", "recipe")
  assert list(small)[:2] == ["ste", "paper_ste_linear_ste_lr"] and seeds == (3, 4, 5, 6, 7)
  assert "optimizer.learning_rate=0.003" in small["paper_ste_linear_ste_lr"]
  # amendment 62: and STE and the setting at a third of the rate, as LLaMA-20M's (below);
  # amendment 66: and STE at a ninth (3.33e-4), width 192's only
  ninth = small.pop("ste_lr_ninth")
  assert ninth == ["estimator.kind=ste", "optimizer.learning_rate=0.000333333"]
  assert list(small)[2:] == ["ste_lr_third", "paper_ste_linear_ste_lr_third"]
  narrow, nine = study.base_config("llama_3m"), study.base_config("llama_9m")
  assert (narrow.model.dim, narrow.model.heads, narrow.model.layers) == (192, 3, nine.model.layers)
  assert narrow.data == nine.data and narrow.num_train_steps == nine.num_train_steps == 1000
  # amendment 46: LLaMA-20M at real size with LLaMA-9M's recipe and rate (a GPU job)
  twenty, seeds = study.stage_variants("llama_20m", "recipe")
  assert seeds == (3, 4, 5, 6, 7)
  # amendment 52: and STE and the setting at a third of the rate, the same four as llama_3m's
  assert twenty == small
  assert {k: twenty[k] for k in list(twenty)[2:]} == {"ste_lr_third": [
      "estimator.kind=ste", "optimizer.learning_rate=0.001"], "paper_ste_linear_ste_lr_third": [
      "estimator.kind=fogzo", "estimator.noise_share=0.3", "optimizer.learning_rate=0.001",
      "estimator.difference=ste_linear"]}
  big = study.base_config("llama_20m")
  assert (big.model.dim, big.model.layers, big.model.heads) == (448, 8, 7)
  assert big.data == nine.data and big.optimizer == nine.optimizer and big.num_train_steps == 1000
  # amendment 63: the width-192 model for 3,000 steps (llama_9m_long's recipe) on fresh seeds
  longer, seeds = study.stage_variants("llama_3m_long", "recipe")
  assert longer == small and seeds == (10, 11, 12)
  long_narrow, long_nine = study.base_config("llama_3m_long"), study.base_config("llama_9m_long")
  assert long_narrow.model == narrow.model and long_narrow.optimizer == long_nine.optimizer
  assert long_narrow.data == long_nine.data and long_narrow.num_train_steps == 3000
  assert (long_narrow.eval_every_steps, long_narrow.checkpoint_every_steps) == (500, 500)


def test_amendment_45_gives_ste_the_settings_wall_time_timed_alone(tmp_path, monkeypatch,
                                                                   capsys):
  """LLaMA-9M's equal-time stage: STE for the README's setting's steps × its step-time ratio
  timed alone (step_ratio.json), on the seeds the setting was confirmed on; refused without that
  timing, or with one of another setting."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  with pytest.raises(app.UsageError, match="step_ratio.json is missing: run --stage=step_ratio"):
    study.stage_variants("llama_9m", "equal_time")
  timed = tmp_path / "llama_9m" / "step_ratio.json"
  timed.parent.mkdir()
  timed.write_text(json.dumps(dict(ratio={"paper": 1.5})))
  with pytest.raises(app.UsageError, match="has no timing of paper_ste_linear_ste_lr: rerun"):
    study.stage_variants("llama_9m", "equal_time")
  timed.write_text(json.dumps(dict(ratio={"paper_ste_linear_ste_lr": 1.2345})))
  variants, seeds = study.stage_variants("llama_9m", "equal_time")
  assert seeds == (6, 7, 8, 9)
  assert variants == {"ste_equal_time_paper_ste_linear_ste_lr_x1.23": [
      "estimator.kind=ste", "num_train_steps=1234"]}
  timed.write_text(json.dumps(dict(ratio={"paper_ste_linear_ste_lr": 0.9})))
  assert list(study.stage_variants("llama_9m", "equal_time")[0].values()) == [
      ["estimator.kind=ste", "num_train_steps=1000"]]  # never fewer steps than the setting's
  # the report's table of that stage is over the same seeds
  run = tmp_path / "llama_9m" / "equal_time" / "ste_equal_time_paper_ste_linear_ste_lr_x0.90_s8"
  run.mkdir(parents=True)
  (run / "summary.json").write_text(json.dumps(dict(seed=8, val_perplexity=6.125,
                                                    wall_time_s=2057.0, steps=1000)))
  (run / "metrics.jsonl").write_text(json.dumps(dict(step=1000, step_loss=1.65)) + "\n")
  study.report()
  text = (tmp_path / "report.md").read_text()
  assert "### llama_9m — equal_time (seeds 6, 7, 8, 9)" in text
  assert "| ste_equal_time_paper_ste_linear_ste_lr_x0.90 | 6.125 | 6.125 |" in text
  # with --model, the file still holds every model and the print only that model's tables
  capsys.readouterr()
  study.report("llama_9m")
  assert (tmp_path / "report.md").read_text() == text
  shown = capsys.readouterr().out
  assert "### llama_9m — equal_time" in shown and "### mnist" in text
  assert all(h.startswith("### llama_9m — ") for h in shown.splitlines() if h.startswith("### "))
  with pytest.raises(app.UsageError, match="--model: 'llama_9' is not one of mnist, "):
    study.report("llama_9")


def test_amendments_47_and_49_time_the_mnist_settings_and_count_their_epochs_in_steps(
    tmp_path, monkeypatch):
  """MNIST's equal-time stage (amendments 47 and 49): step_ratio times STE against the README's
  setting and the gradient-noise control side by side (recipe-stage settings, not confirm ones)
  and records each one's steps, 10 epochs of 117 batches, which the epoch-counted config does not
  hold; STE then gets those steps × each ratio on seeds 3-7. A timing without a step count, or
  without one of the settings, is refused."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  timed = tmp_path / "mnist" / "step_ratio.json"
  timed.parent.mkdir()
  settings = ("paper_ste_linear_ste_lr", "gradient_noise_ste_lr")
  timed.write_text(json.dumps(dict(ratio=dict.fromkeys(settings, 1.2))))
  with pytest.raises(app.UsageError, match="has no step count: rerun --stage=step_ratio"):
    study.stage_variants("mnist", "equal_time")
  timed.write_text(json.dumps(dict(ratio={settings[0]: 1.2}, steps={settings[0]: 1170})))
  with pytest.raises(app.UsageError, match="has no timing of gradient_noise_ste_lr: rerun"):
    study.stage_variants("mnist", "equal_time")
  ratios = study.step_ratio("mnist", steps=2, rounds=1)
  record = json.loads(timed.read_text())
  assert record["ratio"] == ratios and set(ratios) == set(settings)
  assert record["steps"] == dict.fromkeys(settings, 1170)
  assert set(record["step_ms"]) == {"ste", *settings} and min(ratios.values()) > 0
  timed.write_text(json.dumps(dict(record, ratio={settings[0]: 1.2, settings[1]: 1.3})))
  variants, seeds = study.stage_variants("mnist", "equal_time")
  assert seeds == (3, 4, 5, 6, 7)
  assert list(variants) == ["ste_equal_time_paper_ste_linear_ste_lr_x1.20",
                            "ste_equal_time_gradient_noise_ste_lr_x1.30"]
  for overrides, steps in zip(variants.values(), (1404, 1521)):
    assert overrides[-1] == f"num_train_steps={steps}" and "estimator.kind=ste" in overrides


def test_amendments_69_and_70_check_the_mnist_win_against_ste_at_finer_rates_and_longer(
    tmp_path, monkeypatch):
  """Amendment 69: MNIST's recipe stage adds STE at the rates √3 either side of its chosen 6e-3,
  tested against the setting and the control. Amendment 70: the MNIST MLP for 30 epochs, STE's
  rate tuned at that length on seeds 0-2 (a grid twice as fine), then STE, the setting and the
  control at that rate on fresh seeds 10-14; no other stage, and the recipe is refused until the
  tuning runs are all there."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  mnist = study.stage_variants("mnist", "recipe")[0]  # from the committed record: STE at 6e-3
  assert list(mnist) == ["ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr",
                         "ste_lr0.00346", "ste_lr0.0104"]
  assert mnist["ste_lr0.00346"] == ["estimator.kind=ste", "optimizer.learning_rate=0.00346"]
  assert mnist["ste_lr0.0104"] == ["estimator.kind=ste", "optimizer.learning_rate=0.0104"]
  pairs = [(a, b) for a, b in study.RECIPE_PAIRS if a in mnist and b in mnist]
  assert {("ste_lr0.00346", "paper_ste_linear_ste_lr"), ("ste_lr0.0104", "paper_ste_linear_ste_lr"),
          ("ste_lr0.00346", "gradient_noise_ste_lr"),
          ("ste_lr0.0104", "gradient_noise_ste_lr")} <= set(pairs)
  study.report("mnist")
  assert "### mnist — recipe (amendments 19 and 69; seeds 3, 4, 5, 6, 7)" in (
      tmp_path / "report.md").read_text()
  long = study.base_config("mnist_long")
  assert long.num_epochs == 30 and long.data.eval_train
  assert long.model == study.base_config("mnist").model and long.data.batch_size == 512
  rates, seeds = study.stage_variants("mnist_long", "ste_lr")
  assert seeds == (0, 1, 2) and list(rates) == [
      "ste_lr0.000667", "ste_lr0.00115", "ste_lr0.002", "ste_lr0.00346", "ste_lr0.006",
      "ste_lr0.0104", "ste_lr0.018"]
  with pytest.raises(app.UsageError, match="mnist_long/ste_lr is not finished"):
    study.stage_variants("mnist_long", "recipe")
  with pytest.raises(app.UsageError, match=r"mnist_long runs only --stage=ste_lr then "
                                           r"--stage=recipe \(amendment 70\)"):
    study.run_stage("mnist_long", "confirm")
  study.report("mnist_long")  # before the tuning runs: a note, not a crash
  assert "<!-- mnist_long: mnist_long/ste_lr is not finished" in (
      tmp_path / "report.md").read_text()
  _fake_tuning_runs(tmp_path, "mnist_long", lambda name: 0.4 if name == "ste_lr0.00346" else 0.5,
                    ("ste_lr",))  # 3.46e-3 is the best on average
  variants, seeds = study.stage_variants("mnist_long", "recipe")
  assert seeds == (10, 11, 12, 13, 14)
  assert variants == {
      "ste": ["estimator.kind=ste", "optimizer.learning_rate=0.00346"],
      "paper_ste_linear_ste_lr": ["estimator.kind=fogzo", "estimator.noise_share=0.3",
                                  "optimizer.learning_rate=0.00346",
                                  "estimator.difference=ste_linear"],
      "gradient_noise_ste_lr": ["estimator.kind=gradient_noise", "estimator.noise_share=0.3",
                                "optimizer.learning_rate=0.00346"]}
  study.report("mnist_long")
  text = (tmp_path / "report.md").read_text()
  assert "### mnist_long — recipe (amendment 70; seeds 10, 11, 12, 13, 14)" in text
  assert "- paper_ste_linear_ste_lr vs ste: not complete" in text
  assert "mnist_long — grid" not in text
  # amendment 71: the same three settings replicated on fresh seeds 15-19, then pooled over 10-19
  lines = study.extended("mnist_long", "recipe")
  titles = [x for x in lines if x.startswith("Amendment 71")]
  assert len(titles) == 2 and all("seeds 10, 11, 12, 13, 14, stands" in x for x in titles)
  assert "fresh seeds 15-19" in titles[0] and "seeds 10-19 (pooled" in titles[1]
  assert [x.split(" (no summary")[0] for x in lines if x.startswith("- ")] == 2 * [
      "- paper_ste_linear_ste_lr vs ste: not complete",
      "- gradient_noise_ste_lr vs ste: not complete",
      "- gradient_noise_ste_lr vs paper_ste_linear_ste_lr: not complete"]



def _assert_recipe_at_the_tuned_rate(tmp_path, model, rate, seeds=(10, 11, 12, 13, 14)):
  """With fake tuning runs in which STE at ``rate`` is best, the recipe stage of a model with its
  own STE tuning (amendments 72, 73 and 75) runs STE, the setting and the control at that rate on
  ``seeds``."""
  _fake_tuning_runs(tmp_path, model, lambda name: 0.1 if name == f"ste_lr{rate}" else 0.2,
                    ("ste_lr",))
  variants, recipe_seeds = study.stage_variants(model, "recipe")
  assert recipe_seeds == seeds
  assert list(variants) == ["ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr"]
  assert all(f"optimizer.learning_rate={rate}" in o for o in variants.values())

def test_amendment_72_runs_the_mnist_recipe_at_widths_100_and_1000(tmp_path, monkeypatch):
  """Amendment 72: the MNIST MLP with hidden width 100 and 1,000 (10x and 100x the quantized
  weights), STE's rate tuned per width on seeds 0-2 from nine rates a factor √3 apart, then STE, the
  setting and the control at that rate on seeds 10-14."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  narrow = study.base_config("mnist")
  for width, d in ((100, 79_510), (1000, 795_010)):
    model = f"mnist_w{width}"
    config = study.base_config(model)
    assert tuple(config.model.features) == (width, 10) and config.num_epochs == narrow.num_epochs
    assert config.data == study.base_config("mnist_long").data and config.quant == narrow.quant
    assert f"({d:,} quantized weights)" in study.MODELS[model][4]
    rates, seeds = study.stage_variants(model, "ste_lr")
    assert seeds == (0, 1, 2) and len(rates) == 9
    assert [float(k[len("ste_lr"):]) for k in rates] == pytest.approx(
        [6e-3 * 3 ** (k / 2) for k in range(-6, 3)], rel=5e-3)
    with pytest.raises(app.UsageError, match=f"{model}/ste_lr is not finished"):
      study.stage_variants(model, "recipe")
    _assert_recipe_at_the_tuned_rate(tmp_path, model, "0.000385")
  # the d the description gives is the MLP's count of weights and biases (all quantized)
  variables = MLP(features=(100, 10)).init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  assert sum(x.size for x in jax.tree_util.tree_leaves(variables["params"])) == 79_510



def test_amendment_73_runs_the_mlp_on_fashion_mnist_and_with_float_biases(tmp_path, monkeypatch):
  """Amendment 73: the MNIST recipe with one thing changed, the data set (Fashion-MNIST) or the
  biases (in float: not quantized, so neither perturbed nor noised), STE's rate tuned per model on
  seeds 0-2 from amendment 72's nine rates, then STE, the setting and the control on seeds 10-14."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  mnist = study.base_config("mnist")
  fashion, float_bias = study.base_config("fmnist"), study.base_config("mnist_float_bias")
  assert fashion.data.name == "fashion_mnist" and mnist.data.name == "mnist"
  assert fashion.data.to_dict() == {**mnist.data.to_dict(), "name": "fashion_mnist"}
  assert fashion.quant == mnist.quant and fashion.model == mnist.model
  assert mnist.quant.bias and not float_bias.quant.bias
  assert float_bias.quant.to_dict() == {**mnist.quant.to_dict(), "bias": False}
  assert float_bias.data == mnist.data and float_bias.model == mnist.model
  for model in ("fmnist", "mnist_float_bias"):
    assert fashion.num_epochs == float_bias.num_epochs == mnist.num_epochs == 10
    rates, seeds = study.stage_variants(model, "ste_lr")
    assert seeds == (0, 1, 2) and list(rates) == list(study.stage_variants("mnist_w100",
                                                                           "ste_lr")[0])
    with pytest.raises(app.UsageError, match=f"{model}/ste_lr is not finished"):
      study.stage_variants(model, "recipe")
    with pytest.raises(app.UsageError, match=f"{model} runs only --stage=ste_lr then "
                                             r"--stage=recipe \(amendment 73\)"):
      study.run_stage(model, "grid")
    _assert_recipe_at_the_tuned_rate(tmp_path, model, "0.0104")
  # the d each description gives: with float biases only the two kernels are quantized
  for bias, d in ((True, 7_960), (False, 7_940)):
    spec = QuantSpec(kind="fixed", bits=2, bias=bias)
    variables = MLP(features=(10, 10), spec=spec).init(jax.random.PRNGKey(0),
                                                       jnp.zeros((1, 28, 28, 1)))
    assert _quantized_weights(variables) == d
  assert "(7,940 quantized weights)" in study.MODELS["mnist_float_bias"][4]
  assert "(7,960 quantized weights)" in study.MODELS["fmnist"][4]

def test_amendment_74_replicates_fashion_mnist_on_ten_fresh_seeds():
  """Amendment 74: amendment 73's three Fashion-MNIST settings on seeds 15-24, tested alone, then
  pooled over 10-24 as a description; amendment 73's five-seed tests stand."""
  (fresh, pooled) = study.RECIPE_EXTENDED["fmnist"]
  settings = ("ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr")
  assert fresh[1] == tuple(range(15, 25)) and pooled[1] == tuple(range(10, 25))
  assert fresh[2] == pooled[2] == settings and "pooled, a description" in pooled[0]
  assert fresh[3] == pooled[3] == (settings[:2], settings[::2], settings[1:])
  assert study.RECIPE_ONLY["fmnist"] == (73, (10, 11, 12, 13, 14))


def test_amendment_75_runs_the_mlp_on_cifar10(tmp_path, monkeypatch):
  """Amendment 75: the MNIST recipe's MLP on CIFAR-10 flattened (3072-10-10, inputs normalised per
  channel), STE's rate tuned on seeds 0-2 from amendment 72's nine rates, then STE, the setting and
  the control on ten seeds, 10-19."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  mnist, cifar = study.base_config("mnist"), study.base_config("cifar10_mlp")
  assert cifar.data.name == "cifar10" and cifar.data.data_dir == study.CIFAR10_DIR
  assert cifar.data.to_dict() == {**mnist.data.to_dict(), "name": "cifar10",
                                  "data_dir": study.CIFAR10_DIR, "normalize": "imagenet"}
  assert cifar.quant == mnist.quant and cifar.model == mnist.model
  assert cifar.num_epochs == mnist.num_epochs == 10
  rates, seeds = study.stage_variants("cifar10_mlp", "ste_lr")
  assert seeds == (0, 1, 2) and list(rates) == list(study.stage_variants("mnist_w100",
                                                                         "ste_lr")[0])
  with pytest.raises(app.UsageError, match="cifar10_mlp/ste_lr is not finished"):
    study.stage_variants("cifar10_mlp", "recipe")
  with pytest.raises(app.UsageError, match=r"cifar10_mlp runs only --stage=ste_lr then "
                                           r"--stage=recipe \(amendment 75\)"):
    study.run_stage("cifar10_mlp", "grid")
  _assert_recipe_at_the_tuned_rate(tmp_path, "cifar10_mlp", "0.002", tuple(range(10, 20)))
  # the d the description gives: every weight and bias of 3072-10-10
  variables = MLP(features=(10, 10)).init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  d = sum(x.size for x in jax.tree_util.tree_leaves(variables["params"]))
  assert d == 30_840 and "(30,840 quantized weights)" in study.MODELS["cifar10_mlp"][4]


def test_amendment_76_tunes_stes_adam_eps_on_mnist_then_runs_it_beside_the_noise(tmp_path,
                                                                              monkeypatch):
  """Amendment 76: STE's AdamW ε chosen on seeds 0-2 at MNIST's confirmed STE rate (nine values a
  factor √10 apart), then STE, STE at that ε, the setting and the control on seeds 10-19, the
  three others at optax's ε."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  assert study.base_config("mnist_adam_eps") == study.base_config("mnist")
  assert study.base_config("mnist").optimizer.eps == 1e-8
  ste = study.stage_variants("mnist", "confirm")[0]["ste"]
  assert "optimizer.learning_rate=0.006" in ste
  variants, seeds = study.stage_variants("mnist_adam_eps", "adam_eps")
  assert seeds == (0, 1, 2) and all(v[:-1] == ste for v in variants.values())
  assert [float(v[-1].split("=")[1]) for v in variants.values()] == pytest.approx(
      [1e-6 * 10 ** (k / 2) for k in range(9)], rel=5e-3)
  with pytest.raises(app.UsageError, match="mnist_adam_eps/adam_eps is not finished"):
    study.stage_variants("mnist_adam_eps", "recipe")
  for stage in ("ste_lr", "grid", "confirm"):
    with pytest.raises(app.UsageError, match=r"mnist_adam_eps runs only --stage=adam_eps then "
                                             r"--stage=recipe \(amendment 76\)"):
      study.run_stage("mnist_adam_eps", stage)
  with pytest.raises(app.UsageError, match="--stage=adam_eps: only for mnist_adam_eps"):
    study.stage_variants("mnist", "adam_eps")
  _fake_tuning_runs(tmp_path, "mnist_adam_eps",
                    lambda name: 0.1 if name == "ste_eps0.000316" else 0.2, ("adam_eps",))
  recipe, seeds = study.stage_variants("mnist_adam_eps", "recipe")
  assert seeds == tuple(range(10, 20))
  assert list(recipe) == ["ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr",
                          "ste_adam_eps"]
  assert recipe["ste"] == ste and recipe["ste_adam_eps"] == [*ste, "optimizer.eps=0.000316"]
  assert not any(o.startswith("optimizer.eps") for k in ("paper_ste_linear_ste_lr",
                                                          "gradient_noise_ste_lr")
                 for o in recipe[k])
  # the report tables both stages and tests the three pairs of STE at the chosen ε
  study.report("mnist_adam_eps")
  text = (tmp_path / "report.md").read_text()
  assert "### mnist_adam_eps — adam_eps (seeds 0, 1, 2)" in text
  assert "### mnist_adam_eps — recipe (amendment 76; seeds 10, 11, 12" in text
  for line in ("- ste_adam_eps vs ste: not complete",
               "- gradient_noise_ste_lr vs ste_adam_eps: not complete",
               "- paper_ste_linear_ste_lr vs ste_adam_eps: not complete"):
    assert line in text


def test_amendment_77_repeats_76_at_width_100_and_at_30_epochs(tmp_path, monkeypatch):
  """Amendment 77: amendment 76's design on the MNIST MLP at hidden width 100 and at 30 epochs, at
  the STE rate each one's own ste_lr stage chose (amendments 72 and 70), on seeds 20-29."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  for model, source, rate in (("mnist_w100_adam_eps", "mnist_w100", "0.006"),
                              ("mnist_long_adam_eps", "mnist_long", "0.00115")):
    assert study.MODELS[model] == (*study.MODELS[source][:5], None)
    assert study.base_config(model) == study.base_config(source)
    with pytest.raises(app.UsageError, match=f"{source}/ste_lr is not finished"):
      study.stage_variants(model, "adam_eps")
    _fake_tuning_runs(tmp_path, source, lambda name, r=rate: 0.1 if name == f"ste_lr{r}" else 0.2,
                      ("ste_lr",))
    variants, seeds = study.stage_variants(model, "adam_eps")
    # amendment 77's edge rule added 3.16e-7 below the nine values at 30 epochs
    extra = ["ste_eps3.16e-07"] if model == "mnist_long_adam_eps" else []
    assert seeds == (0, 1, 2)
    assert list(variants) == extra + list(study.tuned_variants("mnist_adam_eps",
                                                                         "adam_eps"))
    assert all(v[:2] == ["estimator.kind=ste", f"optimizer.learning_rate={rate}"]
               for v in variants.values())
    _fake_tuning_runs(tmp_path, model, lambda name: 0.1 if name == "ste_eps0.001" else 0.2,
                      ("adam_eps",))
    recipe, seeds = study.stage_variants(model, "recipe")
    assert seeds == tuple(range(20, 30))
    assert recipe["ste_adam_eps"] == [*recipe["ste"], "optimizer.eps=0.001"]
    assert f"optimizer.learning_rate={rate}" in recipe["gradient_noise_ste_lr"]
    with pytest.raises(app.UsageError, match=rf"{model} runs only --stage=adam_eps then "
                                             r"--stage=recipe \(amendment 77\)"):
      study.run_stage(model, "ste_lr")


def test_amendment_78_runs_the_controls_damping_without_noise(tmp_path, monkeypatch):
  """Amendment 78: at each source's STE rate, STE with Adam's second moment floored as the
  control's noise would (optimizer.noise_floor_share at the control's ρ, no noise), beside STE,
  the setting and the control, on seeds 30-39; no tuning stage."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  _fake_tuning_runs(tmp_path, "mnist_w100", lambda name: 0.1 if name == "ste_lr0.006" else 0.2,
                    ("ste_lr",))
  for model, source in (("mnist_floor", "mnist"), ("mnist_w100_floor", "mnist_w100")):
    assert study.MODELS[model] == (*study.MODELS[source][:5], None)
    recipe, seeds = study.stage_variants(model, "recipe")
    assert seeds == tuple(range(30, 40))
    assert list(recipe) == ["ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr",
                            "ste_noise_floor"]
    assert recipe["ste"] == ["estimator.kind=ste", "optimizer.learning_rate=0.006"]
    assert "estimator.noise_share=0.3" in recipe["gradient_noise_ste_lr"]
    assert recipe["ste_noise_floor"] == [*recipe["ste"], "optimizer.noise_floor_share=0.3"]
    with pytest.raises(app.UsageError, match=rf"{model} runs only --stage=recipe "
                                             r"\(amendment 78\)"):
      study.run_stage(model, "adam_eps")
  with pytest.raises(app.UsageError, match="mnist_long/ste_lr is not finished"):
    study.stage_variants("mnist_long_floor", "recipe")
  assert ("ste", "ste_noise_floor") in study.RECIPE_PAIRS
  assert ("ste_noise_floor", "gradient_noise_ste_lr") in study.RECIPE_PAIRS


def test_amendment_79_tunes_the_walk_after_adam_then_runs_it_beside_the_noise(tmp_path,
                                                                           monkeypatch):
  """Amendment 79: at each source's STE rate, STE with noise added after Adam's normalisation
  (optimizer.update_noise_share), η chosen on seeds 0-2 from 0.1, 0.3 and 1, then beside STE, the
  setting and the control on seeds 40-49 (3 added by the amendment's edge rule)."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  _fake_tuning_runs(tmp_path, "mnist_w100", lambda name: 0.1 if name == "ste_lr0.006" else 0.2,
                    ("ste_lr",))
  for model, source in (("mnist_walk", "mnist"), ("mnist_w100_walk", "mnist_w100")):
    assert study.MODELS[model] == (*study.MODELS[source][:5], None)
    assert study.base_config(model) == study.base_config(source)
    variants, seeds = study.stage_variants(model, "update_noise")
    assert seeds == (0, 1, 2)
    assert variants == {f"ste_walk{v}": ["estimator.kind=ste", "optimizer.learning_rate=0.006",
                                         f"optimizer.update_noise_share={v}"]
                        for v in ("0.1", "0.3", "1", "3")}  # 3: the edge rule
    with pytest.raises(app.UsageError, match=f"{model}/update_noise is not finished"):
      study.stage_variants(model, "recipe")
    for stage in ("ste_lr", "adam_eps"):
      with pytest.raises(app.UsageError, match=rf"{model} runs only --stage=update_noise then "
                                               r"--stage=recipe \(amendment 79\)"):
        study.run_stage(model, stage)
    _fake_tuning_runs(tmp_path, model, lambda name: 0.1 if name == "ste_walk0.3" else 0.2,
                      ("update_noise",))
    recipe, seeds = study.stage_variants(model, "recipe")
    assert seeds == tuple(range(40, 50))
    assert list(recipe) == ["ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr",
                            "ste_walk"]
    assert recipe["ste_walk"] == [*recipe["ste"], "optimizer.update_noise_share=0.3"]
  with pytest.raises(app.UsageError, match="--stage=update_noise: only for mnist_walk"):
    study.stage_variants("mnist_adam_eps", "update_noise")
  with pytest.raises(app.UsageError, match="mnist_long/ste_lr is not finished"):
    study.stage_variants("mnist_long_walk", "update_noise")
  for pair in (("ste", "ste_walk"), ("ste_walk", "gradient_noise_ste_lr"),
               ("ste_walk", "paper_ste_linear_ste_lr")):
    assert pair in study.RECIPE_PAIRS
  # the config the runs train with sets the field (and the checks accept it)
  config = study.sweep.apply_overrides(study.base_config("mnist_walk"),
                                       recipe["ste_walk"])
  assert config.optimizer.update_noise_share == 0.3


def test_amendment_80_runs_the_control_without_noise_where_the_ste_gradient_is_zero(
    tmp_path, monkeypatch):
  """Amendment 80: at each source's STE rate, the control with skip_zero_grad (no noise on the
  weights the identity STE does not move) beside STE, the setting and the control, seeds 50-59;
  no tuning stage. Amendment 82 adds the complement, the control's noise only there."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  _fake_tuning_runs(tmp_path, "mnist_w100", lambda name: 0.1 if name == "ste_lr0.006" else 0.2,
                    ("ste_lr",))
  for model, source in (("mnist_skip", "mnist"), ("mnist_w100_skip", "mnist_w100")):
    assert study.MODELS[model] == (*study.MODELS[source][:5], None)
    recipe, seeds = study.stage_variants(model, "recipe")
    assert seeds == tuple(range(50, 60))
    assert list(recipe) == ["ste", "paper_ste_linear_ste_lr", "gradient_noise_ste_lr",
                            study.CONTROL_SKIP, study.CONTROL_ZERO_ONLY]  # 82 adds the last
    assert recipe[study.CONTROL_SKIP] == [*recipe["gradient_noise_ste_lr"],
                                          "estimator.skip_zero_grad=True"]
    assert recipe[study.CONTROL_ZERO_ONLY] == [*recipe["gradient_noise_ste_lr"],
                                               "estimator.only_zero_grad=True"]
    config = study.sweep.apply_overrides(study.base_config(model),
                                         recipe[study.CONTROL_ZERO_ONLY])
    assert config.estimator.only_zero_grad and not config.estimator.skip_zero_grad
    config = study.sweep.apply_overrides(study.base_config(model), recipe[study.CONTROL_SKIP])
    assert config.estimator.kind == "gradient_noise" and config.estimator.skip_zero_grad
    with pytest.raises(app.UsageError, match=rf"{model} runs only --stage=recipe "
                                             r"\(amendment 80\)"):
      study.run_stage(model, "ste_lr")
  assert ("ste", study.CONTROL_SKIP) in study.RECIPE_PAIRS
  assert (study.CONTROL_SKIP, "gradient_noise_ste_lr") in study.RECIPE_PAIRS
  assert ("ste", study.CONTROL_ZERO_ONLY) in study.RECIPE_PAIRS
  # amendment 83: the same five settings on Fashion-MNIST at its STE rate, seeds 40-49
  _fake_tuning_runs(tmp_path, "fmnist", lambda name: 0.1 if name == "ste_lr0.002" else 0.2,
                    ("ste_lr",))
  recipe, seeds = study.stage_variants("fmnist_skip", "recipe")
  assert seeds == tuple(range(40, 50)) and study.RECIPE_ONLY["fmnist_skip"][0] == 83
  assert recipe["ste"] == ["estimator.kind=ste", "optimizer.learning_rate=0.002"]
  assert recipe[study.CONTROL_ZERO_ONLY][-1] == "estimator.only_zero_grad=True"
  assert (study.CONTROL_ZERO_ONLY, "gradient_noise_ste_lr") in study.RECIPE_PAIRS


def test_amendment_81_tunes_the_walk_where_the_noise_did_not_help_and_runs_ste_beside_it(
    tmp_path, monkeypatch):
  """Amendment 81: amendment 79's walk on Fashion-MNIST, the CIFAR-10 MLP and the small LLaMA,
  η tuned on seeds 0-2 from the same values at each source's STE rate, then STE and the walk
  only on seeds 40-49."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  _fake_tuning_runs(tmp_path, "fmnist", lambda name: 0.1 if name == "ste_lr0.002" else 0.2,
                    ("ste_lr",))
  for model, source, rate, edge in (("fmnist_walk", "fmnist", "0.002", ("0.03",)),
                                    ("llama_tiny_walk", "llama_tiny", "0.001", ())):
    assert study.MODELS[model] == (*study.MODELS[source][:5], None)
    assert study.base_config(model) == study.base_config(source)
    variants, seeds = study.stage_variants(model, "update_noise")
    assert seeds == (0, 1, 2)
    assert variants == {f"ste_walk{v}": ["estimator.kind=ste", f"optimizer.learning_rate={rate}",
                                         f"optimizer.update_noise_share={v}"]
                        for v in (*edge, "0.1", "0.3", "1", "3")}  # edge: the edge rule
    with pytest.raises(app.UsageError, match=rf"{model} runs only --stage=update_noise then "
                                             r"--stage=recipe \(amendment 81\)"):
      study.run_stage(model, "confirm")
    _fake_tuning_runs(tmp_path, model, lambda name: 0.1 if name == "ste_walk1" else 0.2,
                      ("update_noise",))
    recipe, seeds = study.stage_variants(model, "recipe")
    assert seeds == tuple(range(40, 50))
    assert recipe == {"ste": variants["ste_walk1"][:2], "ste_walk": variants["ste_walk1"]}
  with pytest.raises(app.UsageError, match="cifar10_mlp/ste_lr is not finished"):
    study.stage_variants("cifar10_mlp_walk", "update_noise")


def test_a_refused_stage_ends_the_script_with_one_line(tmp_path):
  """A stage the study refuses ends the process (exit 2, a bad command line) with one line on
  stderr, not the usage text."""
  script = os.path.join(os.path.dirname(study.__file__), "where_fogzo_helps.py")
  proc = subprocess.run([sys.executable, script, "--model=llama_9m_lsq", "--stage=confirm",
                         f"--out={tmp_path}"], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      "where_fogzo_helps.py: llama_9m_lsq runs only --stage=recipe (amendment 22)"]


def test_a_finished_run_of_another_config_ends_the_script_with_one_line(tmp_path):
  """A run folder copied from elsewhere (e.g. an earlier GPU lease, DONE=) that ran another config
  is not reused: the script ends with exit 2 and one line naming the folder, no traceback."""
  workdir = tmp_path / "llama_9m_long" / "confirm" / "ste_s3"
  workdir.mkdir(parents=True)
  (workdir / "summary.json").write_text(json.dumps({"seed": 3, "val_perplexity": 5.0}))
  (workdir / "config.json").write_text(json.dumps({"seed": 3, "num_train_steps": 7}))
  script = os.path.join(os.path.dirname(study.__file__), "where_fogzo_helps.py")
  proc = subprocess.run([sys.executable, script, "--model=llama_9m_long", "--stage=confirm",
                         "--settings=ste", "--seeds=3", f"--out={tmp_path}"],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr
  (line,) = proc.stderr.strip().splitlines()
  assert line.startswith(f"where_fogzo_helps.py: {workdir} holds a finished run of another "
                         "config (fields [")
  assert "'num_train_steps'" in line and line.endswith("give the sweep another output folder")


def test_amendment_86_runs_ste_kept_in_the_range_beside_ste_and_the_noise_there_only(
    tmp_path, monkeypatch):
  """Amendment 86: at each source's STE rate, STE with optimizer.clip_to_range (a deterministic
  repair of the clipped weights), STE and the control's noise only where the STE gradient is 0,
  nothing else, seeds 60-69; no tuning stage."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  _fake_tuning_runs(tmp_path, "fmnist", lambda name: 0.1 if name == "ste_lr0.002" else 0.2,
                    ("ste_lr",))
  for model, source, rate in (("mnist_clip", "mnist", "0.006"), ("fmnist_clip", "fmnist", "0.002")):
    assert study.MODELS[model] == (*study.MODELS[source][:5], None)
    recipe, seeds = study.stage_variants(model, "recipe")
    assert seeds == tuple(range(60, 70)) and study.RECIPE_ONLY[model][0] == 86
    assert list(recipe) == ["ste", study.STE_CLIP, study.CONTROL_ZERO_ONLY]
    assert recipe["ste"] == ["estimator.kind=ste", f"optimizer.learning_rate={rate}"]
    assert recipe[study.STE_CLIP] == [*recipe["ste"], "optimizer.clip_to_range=True"]
    assert recipe[study.CONTROL_ZERO_ONLY] == [
        "estimator.kind=gradient_noise", "estimator.noise_share=0.3",
        f"optimizer.learning_rate={rate}", "estimator.only_zero_grad=True"]
    config = study.sweep.apply_overrides(study.base_config(model), recipe[study.STE_CLIP])
    assert config.optimizer.clip_to_range and config.quant.kind == "fixed"
    with pytest.raises(app.UsageError, match=rf"{model} runs only --stage=recipe "
                                             r"\(amendment 86\)"):
      study.run_stage(model, "ste_lr")
  assert ("ste", study.STE_CLIP) in study.RECIPE_PAIRS
  assert (study.STE_CLIP, study.CONTROL_ZERO_ONLY) in study.RECIPE_PAIRS
  assert ("ste", study.CONTROL_ZERO_ONLY) in study.RECIPE_PAIRS


def test_amendment_87_runs_the_clip_elsewhere_and_fogzo_on_top_of_it(tmp_path, monkeypatch):
  """Amendment 87: (a) STE with and without the clip on the CIFAR-10 MLP and the small LLaMA,
  seeds 60-69; (b) on the MNIST models and Fashion-MNIST, STE with the clip against FOGZO (ρ 0.3,
  its measured difference), the setting and the control, each with the clip, seeds 70-79."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  recipe, seeds = study.stage_variants("llama_tiny_clip", "recipe")
  assert seeds == tuple(range(60, 70)) and study.RECIPE_ONLY["llama_tiny_clip"][0] == 87
  assert recipe == {"ste": ["estimator.kind=ste", "optimizer.learning_rate=0.001"],
                    "ste_clip": ["estimator.kind=ste", "optimizer.learning_rate=0.001",
                                 "optimizer.clip_to_range=True"]}
  recipe, seeds = study.stage_variants("mnist_clip_fz", "recipe")
  assert seeds == tuple(range(70, 80))
  clip, rate = "optimizer.clip_to_range=True", "optimizer.learning_rate=0.006"
  assert recipe == {
      "ste_clip": ["estimator.kind=ste", rate, clip],
      "fogzo_ste_lr_clip": ["estimator.kind=fogzo", "estimator.noise_share=0.3", rate, clip],
      "paper_ste_linear_ste_lr_clip": ["estimator.kind=fogzo", "estimator.noise_share=0.3", rate,
                                       "estimator.difference=ste_linear", clip],
      "gradient_noise_ste_lr_clip": ["estimator.kind=gradient_noise", "estimator.noise_share=0.3",
                                     rate, clip]}
  config = study.sweep.apply_overrides(study.base_config("mnist_clip_fz"),
                                       recipe["fogzo_ste_lr_clip"])
  assert config.estimator.difference == "loss" and config.optimizer.clip_to_range
  for name in study.ON_TOP_OF_CLIP:
    assert (study.STE_CLIP, name) in study.RECIPE_PAIRS


def test_amendment_88_runs_ste_with_and_without_the_clip_at_llama_9m(tmp_path, monkeypatch):
  """Amendment 88: at LLaMA-9M (1,000 steps), STE at a third of the config's rate (1e-3) with and
  without the clip, seeds 20-22, and their paired test."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  recipe, seeds = study.stage_variants("llama_9m_clip", "recipe")
  assert seeds == (20, 21, 22) and study.RECIPE_ONLY["llama_9m_clip"][0] == 88
  assert study.MODELS["llama_9m_clip"] == (*study.MODELS["llama_9m"][:5], None)
  assert recipe == {"ste_lr_third": ["estimator.kind=ste", "optimizer.learning_rate=0.001"],
                    "ste_lr_third_clip": ["estimator.kind=ste", "optimizer.learning_rate=0.001",
                                          "optimizer.clip_to_range=True"]}
  config = study.sweep.apply_overrides(study.base_config("llama_9m_clip"),
                                       recipe[study.STE_CLIP_THIRD])
  assert config.num_train_steps == 1000 and config.optimizer.clip_to_range
  assert config.quant.kind == "fixed" and config.model.dim == 320
  assert ("ste_lr_third", study.STE_CLIP_THIRD) in study.RECIPE_PAIRS


@pytest.mark.parametrize("model, source, amendment, seeds, model_fields, epochs", [
    ("resnet8_cifar10_clip", "resnet8_cifar10", 113, range(240, 248), {"width": 8}, 5),
    ("deit96_cifar10_clip", "deit96_cifar10", 114, range(251, 259),
     {"name": "deit_tiny", "hidden": 96, "depth": 4, "heads": 3}, 2)])
def test_amendments_113_114_run_ste_with_and_without_the_clip_on_cifar10(
    tmp_path, monkeypatch, model, source, amendment, seeds, model_fields, epochs):
  """Amendments 113 and 114: amendment 87 (a)'s pair on CIFAR-10 with amendment 42's recipe and
  rate (1e-3): on its ResNet-18 width 8 (seeds 240-247), and on DeiT-Tiny's layout at width 96,
  depth 4 for 2 epochs without Mixup (seeds 251-258), run seed by seed with ``--settings``."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  recipe, got_seeds = study.stage_variants(model, "recipe")
  assert got_seeds == tuple(seeds) and study.RECIPE_ONLY[model][0] == amendment
  assert study.MODELS[model] == (*study.MODELS[source][:5], None)
  assert recipe == {"ste": ["estimator.kind=ste"],
                    "ste_clip": ["estimator.kind=ste", "optimizer.clip_to_range=True"]}
  config = study.sweep.apply_overrides(study.base_config(model), recipe[study.STE_CLIP])
  assert config.optimizer.clip_to_range and config.quant.kind == "fixed"
  assert {k: config.model[k] for k in model_fields} == model_fields
  assert config.optimizer.learning_rate == 1e-3 and config.optimizer.warmup_steps == 100
  assert config.data.name == "cifar10" and config.num_epochs == epochs
  assert not config.data.mixup and config.data.batch_size == 128
  assert study.job_order(recipe, tuple(seeds), ["ste", "ste_clip"], "0/2") == [
      ("ste", seed) for seed in seeds]
  assert ("ste", study.STE_CLIP) in study.RECIPE_PAIRS
  if model == "deit96_cifar10_clip":  # the d its description gives (patch and head in float)
    net = models.get_model(**config.model, spec=QuantSpec(**config.quant), num_classes=10)
    variables = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    d = _quantized_weights(variables)
    assert d == 442_368 and f"({d:,} quantized weights)" in study.MODELS[model][4]


def test_amendment_115_replicates_amendment_114_on_fresh_seeds():
  """Amendment 115: amendment 114's DeiT pair on fresh seeds 260-267, tested alone, then pooled
  with 251-257 (seed 258 did not run) as a description; amendment 114's test stands."""
  fresh, pooled = study.RECIPE_EXTENDED["deit96_cifar10_clip"]
  assert fresh[1] == tuple(range(260, 268)) and not set(fresh[1]) & set(
      study.RECIPE_ONLY["deit96_cifar10_clip"][1])
  assert pooled[1] == (*range(251, 258), *range(260, 268)) and "a description" in pooled[0]
  assert fresh[2:] == pooled[2:] == (("ste", "ste_clip"), (("ste", "ste_clip"),))


def test_amendment_96_extends_amendment_88_to_seeds_20_to_26(tmp_path, monkeypatch):
  """Amendment 96: amendment 88's pair on seeds 23-26 too, tested over seeds 20-26 beside
  amendment 88's three-seed test (which stands); the report names the seeds whose runs are
  missing instead of testing fewer."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  ((title, seeds, names, pairs),) = study.RECIPE_EXTENDED["llama_9m_clip"]
  assert "Amendment 96" in title and seeds == tuple(range(20, 27))
  assert names == ("ste_lr_third", study.STE_CLIP_THIRD) and pairs == (names,)
  assert study.stage_variants("llama_9m_clip", "recipe")[1] == (20, 21, 22)
  report = "\n".join(study.extended("llama_9m_clip", "recipe"))
  assert "seeds 20, 21, 22, stands" in report and "no summary of ste_lr_third seeds 20" in report


@pytest.mark.parametrize("model, amendment, seeds, names, frozen", [
    ("llama_tiny_lsq_clip", 89, range(80, 90), ("ste_lsq", "ste_lsq_clip"), []),
    ("llama_tiny_lsq_frozen_clip", 94, range(100, 105),
     ("ste_lsq_frozen", "ste_lsq_frozen_clip"), ["optimizer.step_size_lr_factor=0"])])
def test_amendments_89_and_94_run_ste_with_lsq_with_and_without_the_clip(
    tmp_path, monkeypatch, model, amendment, seeds, names, frozen):
  """Amendment 89: the small LLaMA with 2-bit LSQ weights, STE at the source's rate with and
  without the clip (the learned step's range), seeds 80-89; amendment 94: the same pair with
  LSQ's step sizes frozen (factor 0), seeds 100-104; each with its paired test."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  recipe, got_seeds = study.stage_variants(model, "recipe")
  assert got_seeds == tuple(seeds) and study.RECIPE_ONLY[model][0] == amendment
  ste = ["estimator.kind=ste", "optimizer.learning_rate=0.001", "quant.kind=lsq", *frozen]
  assert recipe == {names[0]: ste, names[1]: ste + ["optimizer.clip_to_range=True"]}
  config = study.sweep.apply_overrides(study.base_config(model), recipe[names[1]])
  config_lib.validate(config)
  assert config.quant.kind == "lsq" and config.optimizer.clip_to_range
  assert config.model.dim == 64 and config.num_train_steps == 3000
  assert config.optimizer.step_size_lr_factor == (0 if frozen else 1)
  assert names in study.RECIPE_PAIRS


def test_amendment_90_runs_deit_tiny_on_cifar10_with_the_control(tmp_path, monkeypatch):
  """Amendment 90 (a GPU job): DeiT-Tiny at full size on CIFAR-10 with amendment 42's recipe and
  no Mixup, STE, the README's setting and the control at 1e-3 on seeds 3-7; a valid config whose
  patch is 4 on the 32-px images."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  variants, seeds = study.stage_variants("deit_tiny_cifar10", "recipe")
  assert seeds == (3, 4, 5, 6, 7) and study.RECIPE_ONLY["deit_tiny_cifar10"][0] == 90
  assert variants == study.stage_variants("resnet8_cifar10", "recipe")[0]
  config = study.base_config("deit_tiny_cifar10")
  for overrides in variants.values():
    config_lib.validate(study.sweep.apply_overrides(config, overrides))
  assert (config.model.name, config.model.hidden, config.model.depth) == ("deit_tiny", 192, 12)
  resnet = study.base_config("resnet8_cifar10")
  for field in ("name", "data_dir", "augment", "normalize", "batch_size"):
    assert config.data[field] == resnet.data[field]
  assert not config.data.mixup and config.num_epochs == 5
  assert config.optimizer.learning_rate == 0.001 and config.optimizer.warmup_steps == 100
  assert resolve_patch_size(config.model.patch_size, 32) == 4
  with pytest.raises(app.UsageError, match=r"runs only --stage=recipe \(amendment 90\)"):
    study.run_stage("deit_tiny_cifar10", "confirm")


def test_amendment_91_runs_fogzo_on_top_of_the_clip_on_the_small_llama(tmp_path, monkeypatch):
  """Amendment 91: amendment 87 (b)'s four settings (STE with the clip; FOGZO, the setting and the
  control, each with the clip) on the small LLaMA at its STE rate, seeds 90-99."""
  monkeypatch.setattr(study, "OUT", str(tmp_path))
  recipe, seeds = study.stage_variants("llama_tiny_clip_fz", "recipe")
  assert seeds == tuple(range(90, 100)) and study.RECIPE_ONLY["llama_tiny_clip_fz"][0] == 91
  clip, rate = "optimizer.clip_to_range=True", "optimizer.learning_rate=0.001"
  assert list(recipe) == [study.STE_CLIP, *study.ON_TOP_OF_CLIP]
  assert recipe[study.STE_CLIP] == ["estimator.kind=ste", rate, clip]
  assert recipe["fogzo_ste_lr_clip"] == ["estimator.kind=fogzo", "estimator.noise_share=0.3",
                                         rate, clip]
  config = study.sweep.apply_overrides(study.base_config("llama_tiny_clip_fz"),
                                       recipe["fogzo_ste_lr_clip"])
  assert config.model.dim == 64 and config.estimator.difference == "loss"
