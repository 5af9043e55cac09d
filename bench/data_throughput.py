"""Host input-pipeline throughput (batches/s): this checkout against an older one, in one run.

  git worktree add /tmp/old 0ef8093     # the hand-written pipeline before grain
  python bench/data_throughput.py --old=/tmp/old --cifar=/path/to/cifar10 --out=data.json

Each pipeline is timed in its own subprocess (PYTHONPATH set to its checkout) the way its train
loop consumes it: the old one through its prefetch thread, the new one through grain's iterator
with ``loop.READ_OPTIONS``; the first --warmup batches are not timed. Pipelines: MNIST (batch
512, in memory, no augmentation) and, from --cifar, CIFAR-10 at batch 128, 32 px, crop + flip:
``folder`` where it holds the extracted train/ and test/ trees (an ImageFolder: decoding and
augmentation per image), ``cifar10`` where it holds the JPEG archives as shipped
(``cifar10_{train,test}_jpg.tar.gz``: decoded once into memory, then augmentation per image;
this checkout only, older ones lack it). A bad flag
or a failed measurement ends the script with one line and a non-zero exit code.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

from fogzo_jax.data.images import CIFAR10_ARCHIVES
from fogzo_jax.train import exits

from checkouts import HERE, require_positive, to_time  # bench/checkouts.py, beside this script

_OLD = flags.DEFINE_string("old", "", "Checkout of the older version ('' : only this one).")
_CIFAR = flags.DEFINE_string("cifar", "", "CIFAR-10 JPEGs: train/ and test/ trees (and, for the "
                             "in-memory row, the archives as shipped).")
_BATCHES = flags.DEFINE_integer("batches", 200, "Timed batches per pipeline.")
_WARMUP = flags.DEFINE_integer("warmup", 20, "Untimed batches first.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Alternating repetitions (median reported).")
_OUT = flags.DEFINE_string("out", "bench_data_throughput.json", "JSON output path.")

# The measurement, run with PYTHONPATH=<checkout>: prints batches/s. ``api`` picks the old
# (flat config, .batch(step) + prefetch) or the new (config.data sections, grain) interface.
SNIPPET = """
import sys, time
name, data_dir, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
options = dict(mnist=dict(name="mnist", batch_size=512),
               folder=dict(name="imagefolder", data_dir=data_dir, batch_size=128, image_size=32,
                           augment="crop_flip", eval_train=False),
               cifar10=dict(name="cifar10", data_dir=data_dir, batch_size=128,
                            augment="crop_flip", eval_train=False))[name]
try:
  from fogzo_jax.data import pipeline
  from fogzo_jax.train import loop
  data = pipeline.make_pipeline(**options, seed=0)
  it = iter(data.train.to_iter_dataset(loop.READ_OPTIONS))
  batches = (next(it) for _ in range(n + warmup))
except TypeError:  # the older interface: one flat config
  from fogzo_jax.data import pipeline
  from fogzo_jax.train.config import default_config
  config = default_config()
  config.update(dataset=options.pop("name"), **options)
  data = pipeline.make_pipeline(config)
  batches = (b for _, b in pipeline.prefetch(data.batch, 0, n + warmup))
for i, batch in enumerate(batches):
  if i == warmup - 1:
    start = time.perf_counter()
print(n / (time.perf_counter() - start))
"""


def measure(checkout: str, name: str, data_dir: str) -> float:
  env = dict(os.environ, PYTHONPATH=checkout)
  out = subprocess.run([sys.executable, "-c", SNIPPET, name, data_dir, str(_BATCHES.value),
                        str(_WARMUP.value)], env=env, capture_output=True, text=True,
                       timeout=1800, cwd=checkout)
  if out.returncode:
    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
    exits.exit_now(1, f"data_throughput.py: the {name} pipeline of {checkout} failed ({last}); "
                      f"rerun that checkout's pipeline alone to see the whole error")
  return float(out.stdout.strip().splitlines()[-1])


def cifar_pipelines() -> list[str]:
  """The CIFAR-10 rows --cifar allows: "folder" (extracted trees), "cifar10" (the archives)."""
  root = _CIFAR.value
  return [name for name, there in (
      ("folder", all(os.path.isdir(os.path.join(root, s)) for s in ("train", "test"))),
      ("cifar10", all(os.path.isfile(os.path.join(root, a))
                      for a in CIFAR10_ARCHIVES.values()))) if there]


def check_flags() -> dict:
  """The checkouts to time ("this", and "old" with --old); a bad flag is an ``app.UsageError``."""
  require_positive(batches=_BATCHES.value, warmup=_WARMUP.value, repeats=_REPEATS.value)
  if _CIFAR.value and not cifar_pipelines():
    raise app.UsageError(f"--cifar: {_CIFAR.value!r} holds neither train/ and test/ folders of "
                         f"JPEGs nor the archives {' and '.join(CIFAR10_ARCHIVES.values())}")
  return to_time(_OLD.value)


def main(argv):
  del argv
  with exits.one_line_errors("data_throughput.py"):
    checkouts = check_flags()
  pipelines = ["mnist"] + (cifar_pipelines() if _CIFAR.value else [])
  rows = []
  for name in pipelines:
    mine = checkouts if name != "cifar10" else {"this": HERE}
    samples = {k: [] for k in mine}
    for _ in range(_REPEATS.value):  # alternate, so both see the same machine state
      for label, path in mine.items():
        samples[label].append(measure(path, name, _CIFAR.value))
    result = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    rows.append(dict(pipeline=name, batches_per_s=result, samples=samples,
                     ratio_this_to_old=result["this"] / result["old"] if "old" in result
                     else None))
    print(json.dumps(rows[-1]), flush=True)
  with open(_OUT.value, "w") as f:
    json.dump(dict(rows=rows, cpu_count=os.cpu_count()), f, indent=1)


if __name__ == "__main__":
  app.run(main, flags_parser=exits.parse_flags)  # a bad flag: one line, exit 2
