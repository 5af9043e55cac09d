"""Run one config under several variants × seeds and summarise: the engine of experiments/.

A *variant* is a named list of ``key=value`` overrides with dotted keys as on the command line
(``estimator.kind=fogzo``, ``estimator.beta_min=0.9999``…). Every (variant, seed) run trains in
``<out>/<variant>_s<seed>`` through ``train_and_evaluate``; a finished run (its
``summary.json`` exists, and its ``config.json`` is the requested config) is reused and a
killed one resumes from its checkpoint, so a sweep can be stopped and restarted at any time.

  base = load_config("configs/llama.py:9m")
  apply_overrides(base, ["num_train_steps=300", "model.dim=64"])
  runs = run_variants(base, {"ste": ["estimator.kind=ste"], "fogzo": ["estimator.kind=fogzo"]},
                      seeds=[0, 1, 2], out="runs/llama")
  headline_metric(runs["ste"])   # ("val_perplexity", 1.0): what to report and its scale
"""

import ast
import importlib.util
import json
import os
import statistics
from typing import Callable, Mapping, Sequence

import ml_collections


def load_config(spec: str) -> ml_collections.ConfigDict:
  """``path/to/config.py[:arg]`` → ``get_config([arg])``, as ``--config`` does on the command line."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist (spec {spec!r})")
  module_spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def flag_config(holder) -> ml_collections.ConfigDict:
  """The config of a ``config_flags.DEFINE_config_file`` flag, loaded now (ml_collections loads
  it lazily); a file that is missing or fails raises ``ConfigError`` in one line."""
  from fogzo_jax.train.config import ConfigError  # noqa: PLC0415
  try:
    config = holder.value
    config.keys()
  except Exception as e:  # pylint: disable=broad-except  # OSError, or the file's own error
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = " ".join(lines[-2:]) if lines else repr(e)
    raise ConfigError(f"cannot load the config: {text}") from None
  return config


def parse_seeds(values: Sequence[str], flag: str = "--seeds") -> list[int]:
  """A seeds flag's strings as integers ≥ 0; otherwise ``ConfigError`` naming the flag (a
  script's one-line exit 2, fogzo_jax/train/exits.py)."""
  if not all(str(s).strip().isdigit() for s in values):
    from fogzo_jax.train.config import ConfigError  # noqa: PLC0415
    raise ConfigError(f"{flag}: {','.join(map(str, values))!r} is not a list of integers ≥ 0 "
                      "(e.g. 3,4,5)")
  return [int(s) for s in values]


def parse_override(item: str):
  """``"key=value"`` → (key, value).

  The value is parsed as JSON (``0.1``, ``true``, ``{"dim": 64}``), else as a Python literal
  (``True``, ``None``, ``(1, 2)``), else kept as the string (``ste=tanh``).
  """
  key, sep, raw = item.partition("=")
  if not sep or not key:
    raise ValueError(f"override must look like key=value; got {item!r}")
  try:
    value = json.loads(raw)
  except json.JSONDecodeError:
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw
  if isinstance(value, dict):
    value = ml_collections.ConfigDict(value)
  return key, value


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """Sets each ``key=value`` on ``config`` (in place; returned); ``key`` may be dotted
  (``estimator.beta_min=0.9``), as on the command line. Unknown keys are refused."""
  for item in overrides:
    key, value = parse_override(item)
    *sections, field = key.split(".")
    target = config
    for name in sections:
      if name not in target or not hasattr(target[name], "keys"):
        raise KeyError(f"override {item!r}: config has no section {name!r}")
      target = target[name]
    if field not in target:
      raise KeyError(f"override {item!r}: config has no field {key!r}")
    target[field] = value
  return config


def run_variants(base: ml_collections.ConfigDict, variants: Mapping[str, Sequence[str]],
                 seeds: Sequence[int], out: str, report_only: bool = False,
                 train_fn: Callable | None = None) -> dict:
  """Trains every (variant, seed) not finished yet; returns {variant: [summary, …]} in seed order.

  Args:
    base: the shared config (not modified).
    variants: name → overrides applied on top of ``base`` (the name is the folder prefix).
    seeds: ``config.seed`` values.
    out: parent folder of the run folders.
    report_only: only read the summaries already there.
    train_fn: ``(config, workdir) -> summary``; ``train_and_evaluate`` by default.
  """
  if train_fn is None:
    train_fn = train_logged
  runs = {}
  for name, overrides in variants.items():
    for seed in seeds:
      workdir = os.path.join(out, f"{name}_s{seed}")
      path = os.path.join(workdir, "summary.json")
      config = apply_overrides(ml_collections.ConfigDict(base.to_dict()), overrides)
      config.seed = int(seed)
      if os.path.exists(path):
        check_recorded_config(workdir, config)
      elif not report_only:
        train_fn(config, workdir)
      if os.path.exists(path):
        with open(path) as f:
          runs.setdefault(name, []).append(json.load(f))
  return runs


def train_logged(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """``train_and_evaluate`` with the libraries' log in ``<workdir>/train.log`` (as train.py
  does), the terminal's logging restored afterwards: a sweep prints its runs' progress bars and
  results, not orbax's INFO lines."""
  from fogzo_jax.train import train_and_evaluate, workdir as workdir_lib  # noqa: PLC0415
  restore = workdir_lib.log_to_file(workdir)
  try:
    return train_and_evaluate(config, workdir)
  finally:
    restore()


def check_recorded_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """A finished run is reused only if it ran ``config`` (its ``config.json``, up to resume-safe
  fields); otherwise the sweep stops and names the fields that differ."""
  from fogzo_jax.train import config as config_lib  # noqa: PLC0415
  with open(os.path.join(workdir, "config.json")) as f:
    recorded = json.load(f)
  bad = config_lib.incompatible_fields(recorded, json.loads(config.to_json()))
  if bad:
    raise config_lib.ConfigError(f"{workdir} holds a finished run of another config (fields "
                                 f"{bad}); delete it or give the sweep another output folder")


def headline_metric(summaries: Sequence[Mapping]) -> tuple[str, float]:
  """(metric key, display scale): validation perplexity for LMs, test accuracy in % otherwise."""
  if any("val_perplexity" in s for s in summaries):
    return "val_perplexity", 1.0
  return "test_accuracy", 100.0


def paired_t(gains: Sequence[float], level: float = 0.05) -> tuple[float, float, str]:
  """The study's decision rule on per-seed gains (paired differences, > 0 favours the second
  method): (t statistic, two-sided critical value at ``level``, "better" / "worse" / "tie")."""
  from scipy import stats  # pylint: disable=import-outside-toplevel
  if len(gains) < 2:
    raise ValueError(f"paired_t: needs gains on at least 2 seeds, got {len(gains)}")
  t = float(stats.ttest_1samp(gains, 0.0).statistic)  # nan when every gain is equal to 0
  critical = float(stats.t.ppf(1 - level / 2, len(gains) - 1))
  return t, critical, ("better" if t > critical else "worse" if t < -critical else "tie")


def mean_std(values: Sequence[float], digits: int = 4) -> str:
  """"m ± s" (sample std over seeds); one value alone; "–" for none."""
  if not values:
    return "–"
  if len(values) == 1:
    return f"{values[0]:.{digits}g}"
  return f"{statistics.mean(values):.{digits}g} ± {statistics.stdev(values):.2g}"
