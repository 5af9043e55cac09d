"""A registered two-stage comparison run by one command: the baseline's rate tuned on a few seeds
by a fixed rule, then every setting at that rate on fresh seeds, two runs at once.

  python experiments/tuned_pairs.py --plan=118 --workers=2 --deadline=2026-12-07T19:55
  python experiments/paired.py --runs=runs/where_fogzo_helps/bits_clip/llama_3m_b4 \\
      --names=ste,ste_clip --seeds=290,...,297 --pairs=ste:ste_clip

Stage 1 runs the plan's first setting at each rate of ``rates`` on ``tune_seeds`` (folders
``ste_lr<rate>_s<seed>``). The rate with the best mean metric is chosen; if it is at an edge of the
grid, the rate ``factor`` beyond it runs on the same seeds and the best of all is chosen (once:
``choose_rate``; a plan may turn the edge rule off). The choice is written to ``<root>/choice.json``. Stage 2 runs the settings, seed
by seed in the plan's order, at that rate (folders ``<setting>_s<seed>``). Each run is one
``train.py`` process; a folder that already holds a ``summary.json`` is skipped, so the command
resumes, once its ``config.json`` is checked to be the run asked for (``sweep``'s rule, before
anything starts). A run still going at ``--deadline`` (this machine's clock) gets SIGTERM, saves a
checkpoint and stays unfinished: the registered test then runs over the seeds whose runs all
finished.

A setting that names its own ``optimizer.learning_rate`` keeps it (its overrides come after the
chosen rate). A plan with no ``rates`` has no stage 1: its overrides, or else each of its
settings, name the rate, as when each setting's rate was chosen by an earlier amendment.

Amendment 118 of docs/results/where_fogzo_helps.md is the first plan run this way; amendments
116 and 117 ran the same rule from a script outside the repository.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys

import ml_collections
from absl import app, flags

from fogzo_jax.train import exits, sweep
from where_fogzo_helps import MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PLAN = flags.DEFINE_string("plan", None, "Which registered plan (PLANS).")
_WORKERS = flags.DEFINE_integer("workers", 2, "Runs at once.")
_DEADLINE = flags.DEFINE_string("deadline", None, "Stop runs still going at this local time "
                                "(ISO, e.g. 2026-12-07T19:55); none: no limit.")
_DRY = flags.DEFINE_bool("dry_run", False, "Print stage 1's commands (with no stage 1: stage "
                          "2's first seed's) and stop.")


@dataclasses.dataclass(frozen=True)
class Plan:
  config: str  # train.py's --config
  overrides: tuple[str, ...]  # "field=value", passed as --config.field=value to every run
  rates: tuple[float, ...]  # stage 1's grid for optimizer.learning_rate, ascending; () none
  tune_seeds: tuple[int, ...]
  settings: dict  # name → its own overrides; the first is the baseline that stage 1 tunes
  seeds: tuple[int, ...]  # stage 2
  metric: str  # summary.json key
  lower_is_better: bool
  root: str  # under the repository
  factor: float | None = 3.0  # the edge rule's step; None: no edge rule (the grid's best)

  def __post_init__(self):
    if self.rates and (_names_rate(self.overrides) or not self.tune_seeds):
      raise ValueError("Plan.rates is stage 1's grid: it needs tune_seeds, and the plan's "
                       "overrides must not name optimizer.learning_rate (stage 1's rate "
                       "would replace it)")
    if not self.rates and not (_names_rate(self.overrides) or
                               all(map(_names_rate, self.settings.values()))):
      unnamed = [s for s, o in self.settings.items() if not _names_rate(o)]
      raise ValueError(f"Plan.rates is empty, so optimizer.learning_rate must be in its "
                       f"overrides or in every setting; settings without it: {unnamed}")


def _names_rate(items) -> bool:
  return any(item.startswith("optimizer.learning_rate=") for item in items)


# STE against STE with the latent weights kept in range (ours), the pair of plans 118 and 119.
CLIP_PAIR = {"ste": ("estimator.kind=ste",),
             "ste_clip": ("estimator.kind=ste", "optimizer.clip_to_range=True")}

PLANS = {
    # Amendment 118 (ours): does keeping the weights in range beat STE at 4 bits on LLaMA-9M's
    # layout at width 192 (3,096,576 quantized weights), with STE's rate tuned at 4 bits?
    # The study's llama_3m (amendment 44) at 4 bits.
    "118": Plan(
        config=f"configs/{MODELS['llama_3m'][0]}",
        overrides=(*MODELS["llama_3m"][1], "quant.bits=4"),
        rates=(1e-3, 3e-3), tune_seeds=(0, 1, 2),
        settings=CLIP_PAIR,
        seeds=tuple(range(290, 298)), metric="val_perplexity", lower_is_better=True,
        root="runs/where_fogzo_helps/bits_clip/llama_3m_b4"),
    # Amendment 119 (ours): is amendment 118's tie at width 192 a matter of size or of the
    # shorter recipe? The small LLaMA's model (llama_tiny's layout) with llama_3m's 1,000-step
    # recipe (LLaMA-9M's), at 4 bits; STE's rate tuned on llama_tiny's grid.
    "119": Plan(
        config=f"configs/{MODELS['llama_tiny'][0]}",
        overrides=(*[o for o in MODELS["llama_tiny"][1] if o.startswith("model.")],
                   *MODELS["llama_9m"][1], "quant.bits=4"),
        rates=(1e-3, 3e-3, 1e-2), tune_seeds=(0, 1, 2),
        settings=CLIP_PAIR,
        seeds=tuple(range(300, 312)), metric="val_perplexity", lower_is_better=True,
        root="runs/where_fogzo_helps/bits_clip/llama_tiny_1k_b4"),
    # Amendment 120 (the paper's tanh STE, and ours): with the tanh STE on the small LLaMA, does
    # the late-phase mix (70 % STE, then FOGZO with noise share 0.3) beat a tuned STE at the same
    # steps, is its measured difference the cause, and does it beat STE given its wall time?
    # ste_equal_time: round(3000 × (0.7 + 0.3 × 1.563)) steps, 1.563 the FOGZO/STE step-time
    # ratio timed alone before the registration.
    "120": Plan(
        config=f"configs/{MODELS['llama_tiny'][0]}",
        overrides=(*MODELS["llama_tiny"][1], "quant.ste=tanh"),
        rates=(1e-3, 3e-3, 1e-2), tune_seeds=(0, 1, 2),
        settings={"ste": ("estimator.kind=ste",),
                  "mix": ("estimator.start_fraction=0.7", "estimator.noise_share=0.3"),
                  "mix_ste_linear": ("estimator.start_fraction=0.7", "estimator.noise_share=0.3",
                                     "estimator.difference=ste_linear"),
                  "ste_equal_time": ("estimator.kind=ste", "num_train_steps=3507")},
        seeds=tuple(range(320, 330)), metric="val_perplexity", lower_is_better=True,
        root="runs/where_fogzo_helps/late_phase_tanh/llama_tiny"),
    # Amendment 121 (ours), which ran from a shell loop before plans could hold a rate per
    # setting: the identity STE with the clip against the tanh STE, and the tanh STE with the
    # clip, on the small LLaMA at 2 bits, each at the rate chosen for its STE on seeds 0-2.
    "121": Plan(
        config=f"configs/{MODELS['llama_tiny'][0]}",
        overrides=(*MODELS["llama_tiny"][1], "estimator.kind=ste"),
        rates=(), tune_seeds=(),
        settings={"ste_clip": ("optimizer.clip_to_range=True", "optimizer.learning_rate=1e-3"),
                  "tanh": ("quant.ste=tanh", "optimizer.learning_rate=3e-3"),
                  "tanh_clip": ("quant.ste=tanh", "optimizer.clip_to_range=True",
                                "optimizer.learning_rate=3e-3")},
        seeds=tuple(range(330, 336)), metric="val_perplexity", lower_is_better=True,
        root="runs/where_fogzo_helps/repairs/llama_tiny"),
    # Amendment 122 (ours): on the MNIST MLP, does the clip add to the tanh STE, and does the
    # pair beat the identity STE with the clip (amendment 121's result on the small LLaMA)? No
    # stage 1: both STEs' rate, 6e-3, was chosen on seeds 0-2 (section 1 and amendment 100).
    "122": Plan(
        config=f"configs/{MODELS['mnist'][0]}",
        overrides=(*MODELS["mnist"][1], "estimator.kind=ste", "optimizer.learning_rate=6e-3"),
        rates=(), tune_seeds=(),
        settings={"ste_tanh": ("quant.ste=tanh",),
                  "ste_tanh_clip": ("quant.ste=tanh", "optimizer.clip_to_range=True"),
                  "ste_identity_clip": ("optimizer.clip_to_range=True",)},
        seeds=tuple(range(340, 360)), metric="final_train_loss", lower_is_better=True,
        root="runs/where_fogzo_helps/repairs/mnist"),
    # Amendment 123 (ours): at LLaMA-9M's layout at width 192 (2 bits, 1,000 steps), does the clip
    # add to the tanh STE? The tanh STE's rate tuned on seeds 0-2 over {1e-3, 3e-3} without the
    # edge rule (CPU time), the same rate for both.
    "123": Plan(
        config=f"configs/{MODELS['llama_3m'][0]}",
        overrides=(*MODELS["llama_3m"][1], "estimator.kind=ste", "quant.ste=tanh"),
        rates=(1e-3, 3e-3), tune_seeds=(0, 1, 2), factor=None,
        settings={"tanh": (), "tanh_clip": ("optimizer.clip_to_range=True",)},
        seeds=tuple(range(360, 366)), metric="val_perplexity", lower_is_better=True,
        root="runs/where_fogzo_helps/repairs/llama_3m"),
}


def choose_rate(means: dict, rates, lower_is_better: bool, factor: float | None = 3.0):
  """(chosen rate or None, rate still to run or None) by the edge rule, from the mean metric of
  each rate run so far. With only the grid done: its best, or, if that is at an edge, the rate
  ``factor`` beyond it still to run. With that extra rate done too: the best of all. With
  ``factor`` None: the grid's best, wherever it is."""
  rates = sorted(rates)
  if any(r not in means for r in rates):
    raise ValueError(f"stage 1 is not finished: no mean for rates "
                     f"{[r for r in rates if r not in means]}")
  pick = min if lower_is_better else max
  best = pick(rates, key=lambda r: means[r])
  if factor is None:
    return best, None
  beyond = (rates[0] / factor if best == rates[0] else
            rates[-1] * factor if best == rates[-1] else None)
  if beyond is None:
    return best, None
  beyond = float(f"{beyond:.3g}")
  if beyond not in means:
    return None, beyond
  return pick([*rates, beyond], key=lambda r: means[r]), None


def overrides(plan: Plan, setting: str, rate: float | None, seed: int) -> list[str]:
  """The run's overrides in order; ``rate`` None: the plan's own (no stage 1)."""
  chosen = [] if rate is None else [f"optimizer.learning_rate={rate:g}"]
  return [*plan.overrides, *chosen, *plan.settings[setting], f"seed={seed}"]


def command(plan: Plan, setting: str, rate: float | None, seed: int, workdir: str) -> list[str]:
  return [sys.executable, os.path.join(ROOT, "train.py"), f"--config={plan.config}",
          *[f"--config.{item}" for item in overrides(plan, setting, rate, seed)],
          f"--workdir={workdir}"]


def check_finished(plan: Plan, runs) -> None:
  """Each finished folder of ``runs`` ((setting, rate, seed, workdir)) must hold the run asked for;
  otherwise ``ConfigError`` names the fields (one line, exit 2) before any run starts."""
  base = sweep.load_config(os.path.join(ROOT, plan.config))
  for setting, rate, seed, workdir in runs:
    if summary(workdir) is not None:
      config = sweep.apply_overrides(ml_collections.ConfigDict(base.to_dict()),
                                     overrides(plan, setting, rate, seed))
      sweep.check_recorded_config(workdir, config)


def jobs(plan: Plan, runs):
  """(argv, workdir) for ``run_all``, each folder checked first (``check_finished``)."""
  check_finished(plan, runs)
  return [(command(plan, *run), run[-1]) for run in runs]


def summary(workdir: str):
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def run_all(jobs, workers: int, deadline):
  """Runs (argv, workdir) jobs, ``workers`` at once, in order; skips finished folders; sends
  SIGTERM to a run still going at ``deadline`` (train.py saves a checkpoint and exits 143; SIGKILL
  after 5 minutes more). Returns how many finished."""
  def one(job):
    argv, workdir = job
    if summary(workdir) is not None:
      return True
    left = None if deadline is None else (deadline - datetime.datetime.now()).total_seconds()
    if left is not None and left <= 0:
      return False
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    print(f"[{datetime.datetime.now():%H:%M:%S}] start {os.path.basename(workdir)}", flush=True)
    with open(workdir + ".log", "w") as log:
      proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
      try:
        code = proc.wait(timeout=left)
      except subprocess.TimeoutExpired:
        proc.terminate()
        try:
          proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait()
        code = "stopped at the deadline"
    print(f"[{datetime.datetime.now():%H:%M:%S}] end {os.path.basename(workdir)}: {code}",
          flush=True)
    return summary(workdir) is not None
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return sum(pool.map(one, jobs))


def tune(plan: Plan, workers: int, deadline) -> float | None:
  """Stage 1 with the edge rule; returns the chosen rate (None: the plan has no stage 1)."""
  if not plan.rates:
    return None
  base = next(iter(plan.settings))
  rates, means = list(plan.rates), {}
  while True:
    run_all(jobs(plan, [(base, r, s, os.path.join(ROOT, plan.root, f"{base}_lr{r:g}_s{s}"))
                        for r in rates for s in plan.tune_seeds]), workers, deadline)
    for r in rates:
      done = [summary(os.path.join(ROOT, plan.root, f"{base}_lr{r:g}_s{s}")) for s in
              plan.tune_seeds]
      if any(d is None for d in done):
        exits.exit_now(1, f"tuned_pairs.py: stage 1: a run at rate {r:g} did not finish (see "
                       "its .log); rerun the same command to resume")
      means[r] = statistics.mean(d[plan.metric] for d in done)
    chosen, more = choose_rate(means, plan.rates, plan.lower_is_better, plan.factor)
    if chosen is not None:
      break
    rates = [more]
  with open(os.path.join(ROOT, plan.root, "choice.json"), "w") as f:
    json.dump({"means": {f"{r:g}": m for r, m in sorted(means.items())},
               "chosen": chosen}, f, indent=1)
  print(f"stage 1: means {', '.join(f'{r:g}: {m:.4f}' for r, m in sorted(means.items()))}; "
        f"chosen {chosen:g}", flush=True)
  return chosen


def main(argv):
  del argv
  with exits.one_line_errors("tuned_pairs.py"):
    if _PLAN.value not in PLANS:
      raise app.UsageError(f"--plan: {_PLAN.value!r} is not one of {', '.join(PLANS)}")
    plan = PLANS[_PLAN.value]
    deadline = None
    if _DEADLINE.value:
      try:
        deadline = datetime.datetime.fromisoformat(_DEADLINE.value)
      except ValueError as e:
        raise app.UsageError(f"--deadline: {_DEADLINE.value!r} is not an ISO time such as "
                             "2026-12-07T19:55") from e
    if _DRY.value:  # stage 1's commands, or stage 2's first seed where there is no stage 1
      base = next(iter(plan.settings))
      for r in plan.rates:
        print(" ".join(command(plan, base, r, plan.tune_seeds[0], "<workdir>")))
      for name in ([] if plan.rates else plan.settings):
        print(" ".join(command(plan, name, None, plan.seeds[0], "<workdir>")))
      return
    rate = tune(plan, _WORKERS.value, deadline)
    todo = jobs(plan, [(name, rate, s, os.path.join(ROOT, plan.root, f"{name}_s{s}"))
                       for s in plan.seeds for name in plan.settings])
    done = run_all(todo, _WORKERS.value, deadline)
    print(f"stage 2: {done} of {len(todo)} runs finished", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=exits.parse_flags)
