"""experiments/: every table row is a valid config, and the table runner/writer works."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import equal_time
import fixed_scale
import headline_plot
import lsq
import quest
import table_runner as tables

from fogzo_jax.train import sweep
from fogzo_jax.train.config import validate

ALL_ROWS = (fixed_scale.make_rows() + lsq.make_rows() + quest.make_rows()
            + equal_time.make_rows(step_ratio=1.29))


@pytest.mark.parametrize("row", [r for r in ALL_ROWS if not r.reason], ids=lambda r: r.key)
def test_every_row_and_variant_is_a_valid_config(row, monkeypatch):
  monkeypatch.chdir(ROOT)
  assert set(row.paper_values) <= set(row.variants), "paper numbers need a variant to sit beside"
  base = sweep.apply_overrides(sweep.load_config(row.config), row.overrides)
  for _, extra in row.variants.values():
    validate(sweep.apply_overrides(sweep.load_config(row.config), row.overrides + extra))
  assert base.data.name in ("fashion_mnist", "tiny_shakespeare")  # runs offline here


def test_every_running_row_has_the_recommended_setting_at_its_own_rate():
  rows = [r for r in fixed_scale.make_rows() + lsq.make_rows() + quest.make_rows() if not r.reason]
  assert rows
  for row in rows:
    label, extra = row.variants[tables.RECIPE]
    assert "ours" in label
    assert set(extra) == {"estimator.kind=fogzo", "estimator.noise_share=0.3",
                          "estimator.difference=ste_linear", "estimator.skip_zero_grad=True"}
    config = sweep.apply_overrides(sweep.load_config(os.path.join(ROOT, row.config)),
                                   row.overrides + extra)
    ste = sweep.apply_overrides(sweep.load_config(os.path.join(ROOT, row.config)),
                                row.overrides + row.variants["ste"][1])
    assert config.optimizer.learning_rate == ste.optimizer.learning_rate  # STE is its control
    assert config.estimator.skip_zero_grad and config.estimator.difference == "ste_linear"
    label, noskip = row.variants[tables.RECIPE_NOSKIP]
    assert "ours" in label and set(noskip) == set(extra) - {"estimator.skip_zero_grad=True"}


def test_rows_at_another_length_keep_their_variants_in_their_own_folders(monkeypatch):
  monkeypatch.chdir(ROOT)
  rows = fixed_scale.make_rows()
  (row,) = [r for r in rows if r.key == "llama_identity"]
  longer = tables.at_length(rows, 1000)
  assert len(longer) == len([r for r in rows if not r.reason])
  (long,) = [r for r in longer if r.key == "llama_identity_1000steps"]
  assert long.variants == row.variants and long.scale.endswith("; here 1000 steps")
  config = sweep.apply_overrides(sweep.load_config(long.config), long.overrides)
  assert config.num_train_steps == 1000  # the last override wins over the row's 300
  (res,) = tables.at_length([r for r in rows if r.key == "resnet18_identity"], 50)
  resnet = sweep.apply_overrides(sweep.load_config(res.config), res.overrides)
  assert resnet.num_train_steps == 50 and resnet.num_epochs == 1  # steps override epochs
  with pytest.raises(ValueError, match="steps must be >= 1"):
    tables.at_length(rows, 0)


@pytest.mark.parametrize("flag, line", [
    ("--rows=nope", "fixed_scale.py: --rows: unknown ['nope']; allowed: "),
    ("--num_train_steps=-1", "fixed_scale.py: --num_train_steps: must be >= 0 (0: each row's "
                             "own length), got -1"),
    ("--seeds=3,x", "fixed_scale.py: --seeds: '3,x' is not a list of integers ≥ 0"),
    ("--nope", "fixed_scale.py: Unknown command line flag 'nope'"),  # absl's parser, one line
    ("--num_train_steps=x", "fixed_scale.py: flag --num_train_steps=x: invalid literal")])
def test_bad_input_ends_a_table_script_with_one_line(flag, line, tmp_path):
  script = os.path.join(ROOT, "experiments", "fixed_scale.py")
  proc = subprocess.run([sys.executable, script, flag, f"--out={tmp_path}"], capture_output=True,
                        text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 2  # a bad command line (fogzo_jax/train/exits.py)
  (only,) = proc.stderr.strip().splitlines()
  assert only.startswith(line)
  assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_rows_not_run_say_why():
  skipped = [r for r in ALL_ROWS if r.reason]
  assert {r.key for r in skipped} >= {"deit_small", "quest_200m", "quest_300m"}
  assert all(len(r.reason) > 40 and not r.variants for r in skipped)


def test_equal_time_step_count():
  assert equal_time.mixed_steps(300, 1.0) == 300
  assert equal_time.mixed_steps(300, 1.29) == 276  # 300 / (0.7 + 0.3·1.29)
  assert equal_time.mixed_steps(300, 5 / 3) == 250
  with pytest.raises(ValueError, match="step_ratio"):
    equal_time.mixed_steps(300, 0.5)
  (row,) = equal_time.make_rows(step_ratio=5 / 3)
  assert "ste70_fogzo30_m250" in row.variants
  # the study's setting: the same mix with noise share 0.3, at the row's rate and at 3x it
  lr = sweep.apply_overrides(sweep.load_config(os.path.join(ROOT, row.config)),
                             row.overrides).optimizer.learning_rate
  _, mix3 = row.variants["ste70_fogzo30_rho0.3_lr3x_m250"]
  _, ste3 = row.variants["ste_lr3x"]
  assert "estimator.noise_share=0.3" in mix3 and "num_train_steps=250" in mix3
  high = f"optimizer.learning_rate={3 * lr:g}"
  assert high in mix3 and high in ste3
  assert "num_train_steps=300" in ste3
  _, mix1 = row.variants["ste70_fogzo30_rho0.3_m250"]
  assert not any(o.startswith("optimizer.learning_rate") for o in mix1)


def test_run_table_and_format(tmp_path):
  def train(config, workdir):
    os.makedirs(workdir)
    ppl = 10.0 + config.seed + (config.estimator.kind == "fogzo")
    summary = dict(seed=config.seed, steps=config.num_train_steps, wall_time_s=2.0,
                   val_perplexity=ppl, val_loss=1.0, tokens_seen=100)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f)
    with open(os.path.join(workdir, "config.json"), "w") as f:  # as train_and_evaluate does
      f.write(config.to_json())

  rows = [tables.Row("tiny", "LLaMA-9M (ppl)", {"ste": 109.95, "fogzo": 105.64}, "tiny scale",
                     os.path.join(ROOT, "configs/llama.py:9m"), ("num_train_steps=7",),
                     {"ste": tables.STE, "fogzo": tables.FOGZO}),
          tables.Row("big", "LLaMA-300M (ppl)", {"ste": 22.9}, reason="needs a GPU")]
  records = tables.run_table(rows, [0, 1], str(tmp_path), train_fn=train)
  assert [r["values"] for r in records[:2]] == [[10.0, 11.0], [11.0, 12.0]]
  text = tables.format_table("T", records, "python x.py", "cpu")
  lines = text.splitlines()
  assert "| LLaMA-9M (ppl) | tiny scale | STE | 109.95 | 10.5 ± 0.71 | 10.00, 11.00 | 7 | 2 |" \
      in lines
  assert "|  |  | FOGZO n = 1, β 1 → 0.999 | 105.64 | 11.5 ± 0.71 | 11.00, 12.00 | 7 | 2 |" in lines
  assert "| LLaMA-300M (ppl) | not run here: needs a GPU | | | | | | |" in lines
  # a partial run (one variant, a new seed; or no row trained) keeps every finished seed
  records = tables.run_table(rows, [2], str(tmp_path), train_fn=train, only=["ste"])
  assert [r["seeds"] for r in records[:2]] == [[0, 1, 2], [0, 1]]
  records = tables.run_table(rows, [7], str(tmp_path), train_fn=train, train_rows=[])
  assert [r["seeds"] for r in records[:2]] == [[0, 1, 2], [0, 1]] and len(records) == 3
  assert not (tmp_path / "tiny" / "ste_s7").exists()


def test_headline_gains_pair_runs_by_seed_and_sign_them(tmp_path):
  ppl = dict(row="lm", paper="LM", reason="", metric="val_perplexity", scale="tiny LM, 300 steps")
  acc = dict(row="img", paper="IMG", reason="", metric="test_accuracy")
  records = [
      dict(ppl, variant="ste", paper_value=100.0, seeds=[0, 1], values=[10.0, 20.0]),
      dict(ppl, variant="fogzo", paper_value=95.0, seeds=[1, 0], values=[19.0, 11.0]),
      dict(ppl, variant="ste_lr3x", paper_value=None, seeds=[0, 1], values=[10.0, 20.0]),
      dict(ppl, variant="fogzo_rho0.3_lr3x", paper_value=None, seeds=[0, 1], values=[9.0, 19.0]),
      dict(acc, variant="ste", paper_value=70.0, seeds=[0], values=[80.0]),
      dict(acc, variant="ste70_fogzo30_m276", paper_value=None, seeds=[0], values=[78.5]),
      dict(row="gpu", paper="GPU", reason="needs a GPU", variant="", paper_value=None),
      dict(ppl, row="big", paper="BIG", variant="ste", paper_value=100.0, seeds=[0], values=[9.0]),
      dict(ppl, row="big", paper="BIG", variant="fogzo", paper_value=95.0, seeds=[], values=[]),
      dict(ppl, row="big", paper="BIG", variant="ste_lr3x", paper_value=None, seeds=[0, 1],
           values=[10.0, 10.0]),
      dict(ppl, row="big", paper="BIG", variant="fogzo_rho0.3_lr3x", paper_value=None,
           seeds=[0, 1], values=[9.0, 11.0]),
      dict(acc, row="rec", paper="REC", variant="ste", paper_value=70.0, seeds=[3, 4],
           values=[80.0, 81.0]),
      dict(acc, row="rec", paper="REC", variant="fogzo", paper_value=71.0, seeds=[], values=[]),
      dict(acc, row="rec", paper="REC", variant=tables.RECIPE, paper_value=None, seeds=[4, 3],
           values=[82.0, 80.5])]
  lm, img, big, rec = headline_plot.row_gains(records)
  three, recommended, _ = (label for _, _, label in headline_plot.PAIRS)
  assert big["ours"] == [] and big["studied"] == {three: pytest.approx([10.0, -10.0])}
  assert big["paper"] == pytest.approx(5.0)  # the paper's gain shows although ours did not run
  assert lm["paper"] == pytest.approx(5.0)             # (100 − 95)/100: FOGZO 5 % better
  assert lm["ours"] == pytest.approx([-10.0, 5.0])     # seed 0: 10 → 11 worse; seed 1 better
  assert img["paper"] is None and img["ours"] == pytest.approx([-1.5])
  assert lm["studied"] == {three: pytest.approx([10.0, 5.0])} and img["studied"] == {}
  # a row that ran only STE and the recommended setting: paired by seed, paper's gain kept
  assert rec["ours"] == [] and rec["studied"] == {recommended: pytest.approx([0.5, 1.0])}
  assert rec["paper"] == pytest.approx(1.0)
  assert lm["label"] == "LM\nours: tiny LM" and img["label"] == "IMG"  # scale's first part
  lines = headline_plot.markdown([lm, img]).splitlines()  # no row ran the recommended setting
  assert lines[0].endswith(f"| gain ours | gain ours, {three} |")
  assert lines[2] == ("| LM / ours: tiny LM | 100 → 95 | 15 ± 7.1 → 15 ± 5.7 | +5.00% | -2.50% "
                      "| +7.50 ± 3.54%, t = +3.00 |")
  assert lines[3] == "| IMG | – | 80 → 78.5 | – | -1.50 pt | – |"
  lines = headline_plot.markdown([img, rec]).splitlines()  # only the recommended setting
  assert lines[0].endswith(f"| gain ours | gain ours, {recommended} |") and three not in lines[0]
  assert lines[3] == "| REC | 70 → 71 | not run | +1.00 pt | – | +0.75 ± 0.35 pt, t = +3.00 |"
  lines = headline_plot.markdown([rec]).splitlines()  # no row ran the paper's FOGZO: no column
  assert lines == ["| paper setting (metric) / our scale | paper STE → FOGZO | gain paper "
                   f"| gain ours, {recommended} |", "|---|---|---|---|",
                   "| REC | 70 → 71 | +1.00 pt | +0.75 ± 0.35 pt, t = +3.00 |"]
  assert headline_plot.markdown([big, img]).splitlines()[2] == (
      "| BIG / ours: tiny LM | 100 → 95 | not run | +5.00% | – | +0.00 ± 14.14%, t = +0.00 |")
  headline_plot.plot([lm, img, big, rec], str(tmp_path / "h.png"))
  assert (tmp_path / "h.png").stat().st_size > 1000
