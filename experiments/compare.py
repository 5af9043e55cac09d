"""STE vs FOGZO (vs n-SPSA) on any config, identical seeds, data and schedules; writes a table.

  python experiments/compare.py --config=configs/llama.py:9m --estimators=ste,fogzo \
      --seeds=0,1,2 --set=num_train_steps=300 --set=data.batch_size=16 \
      --set=model.dim=64 --set=model.layers=2 --set=model.heads=2 --out=runs/llama_tiny

Every (estimator, seed) run goes to <out>/<estimator>_s<seed> through ``train_and_evaluate``
(finished runs are reused, killed ones resume). ``results.md`` in --out lists mean ± std over
seeds of the headline metric (validation perplexity for language models, test accuracy for
image models) and the final loss, with the exact command and the machine.
"""

import json
import os
import platform
import shlex
import statistics
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from fogzo_jax.train import exits, sweep

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:arg]).")
_ESTIMATORS = flags.DEFINE_list("estimators", ["ste", "fogzo"], "Estimators to compare.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds.")
_SET = flags.DEFINE_multi_string("set", [], "Overrides section.field=value (value parsed as "
                                 "JSON if it parses, e.g. model.dim=64).")
_OUT = flags.DEFINE_string("out", "runs/compare", "Output folder.")
_TITLE = flags.DEFINE_string("title", "", "Title of the results page.")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rebuild results.md.")


def main(argv):
  del argv
  # A bad config, flag or override, or a run's fatal error: one line and its exit code.
  with exits.one_line_errors("compare.py"):
    compare()


def compare():
  try:
    base = sweep.apply_overrides(sweep.flag_config(_CONFIG), _SET.value)
  except (KeyError, ValueError) as e:  # a bad --set override (a ConfigError is one too)
    raise app.UsageError(str(e).strip('"')) from None
  seeds = sweep.parse_seeds(_SEEDS.value)
  os.makedirs(_OUT.value, exist_ok=True)
  variants = {e: [f"estimator.kind={e}"] for e in _ESTIMATORS.value}
  runs = sweep.run_variants(base, variants, seeds, _OUT.value,
                            report_only=_REPORT_ONLY.value)
  metric, scale = sweep.headline_metric([r for rs in runs.values() for r in rs])
  loss = "val_loss" if metric == "val_perplexity" else "test_loss"
  lines = [f"# {_TITLE.value or base.model.name}", "",
           "Command: `python " + " ".join(shlex.quote(a) for a in sys.argv) + "`", "",
           f"Machine: {platform.platform()}, {os.cpu_count()} CPU cores, device "
           f"{jax.devices()[0].device_kind}, jax {jax.__version__}.", "",
           f"| estimator | seeds | {metric} | {loss} | steps | wall time per run (s) |",
           "|---|---|---|---|---|---|"]
  for estimator, rs in runs.items():
    lines.append(
        f"| {estimator} | {', '.join(str(r['seed']) for r in rs)} | "
        f"{sweep.mean_std([scale * r[metric] for r in rs])} | "
        f"{sweep.mean_std([r[loss] for r in rs])} | "
        f"{rs[0]['steps']} | {statistics.mean(r['wall_time_s'] for r in rs):.0f} |")
  lines += ["", "Config (after overrides):", "", "```json",
            json.dumps(base.to_dict(), indent=1, sort_keys=True), "```"]
  with open(os.path.join(_OUT.value, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines[:8 + len(runs)]))


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=exits.parse_flags)  # a bad flag: one line, exit 2
