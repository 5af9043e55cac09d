#!/usr/bin/env bash
# Issue 14's GPU job (amendments 9, 10, 16 and 36 of docs/results/where_fogzo_helps.md), one call
# of a lent GPU machine: the `llama_9m_long` confirmation runs, then GPU step times if time is left.
#
#   [DONE=FOLDER] bash experiments/gpu_job.sh OUT [GRID_SECONDS] [END_SECONDS] [WORKERS]
#   MODEL=resnet18_cifar10 STAGE=recipe TIERS="ste paper_ste_linear_ste_lr|gradient_noise_ste_lr" \
#     FOGZO_CIFAR10_DIR=data/cifar10_jpeg bash experiments/gpu_job.sh OUT ...   # another model
#   (MODEL=deit_tiny_cifar10 the same way: amendment 90)
#
# MODEL, STAGE, TIERS ("|" between tiers) and SEEDS default to the llama_9m_long job (amendments
# 36, 39 and 52).
# The settings come from experiments/where_fogzo_helps_choices.json (committed), so a clean
# checkout is enough. Python packages the machine's image lacks travel as wheels in .whl/ (git
# ignores it; `bash experiments/gpu_prepare.sh` fills it, and data/cifar10_jpeg/ for the image
# models) and are installed into /tmp/site first; .whl/extra/ (protobuf) only if the imports fail
# without it.
#
# Amendment 36's queue: one (setting, seed) run per job, first tier 1 (ste,
# paper_ste_linear_ste_lr, paper_ste_linear, paper) seed by seed over seeds 3-7, then tier 2
# (ste_lr3x, paper_rho0.1) the same way, then tier 3 (amendment 39's gradient_noise_ste_lr);
# WORKERS jobs at a time share the GPU, so a deadline leaves whole seeds of tier 1 first. With
# DONE=FOLDER (the runs/gpu folder of an earlier lease, carried), runs finished there are not
# trained again. At GRID_SECONDS the runs still going are stopped (SIGTERM:
# each saves a checkpoint and exits; their workdirs have no summary.json and do not count).
# bench/step_time.py then runs per model until END_SECONDS. Everything written (runs without
# checkpoints, logs, nvidia-smi samples, bench JSON) is packed into OUT/results.tgz;
# OUT/summary.txt lists the finished runs.
#
# Amendment 10 ran the first version (at ab1770b, 8 workers, XLA's defaults): every process spent
# 309-394 s of the 470 s compiling its step (XLA's slow-compile alarm on the float32
# `gemm_fusion_dot` modules), then stepped at 14-22 steps/s. Since then the grid gets XLA flags
# that skip GEMM autotuning, each candidate first tried on a small jitted matmul (an XLA that does
# not know a flag aborts; then the next candidate, finally none), the one used written to
# logs/machine.txt; JAX_PLATFORMS=cuda (set JAX_PLATFORMS to smoke-test elsewhere) makes a GPU that
# JAX cannot use an error instead of a silent run on the host's CPU.
set -u
OUT=${1:?usage: gpu_job.sh OUT [GRID_SECONDS] [END_SECONDS] [WORKERS]}
GRID_S=${2:-545}
END_S=${3:-580}
WORKERS=${4:-8}
MODEL=${MODEL:-llama_9m_long}
STAGE=${STAGE:-confirm}
# amendment 52's tier (STE and the README's setting at 1e-3; amendment 36's tiers ran on the
# first lease), then amendment 36's tiers, then amendment 39's gradient-noise control
TIERS=${TIERS:-"ste_lr_third paper_ste_linear_ste_lr_third|ste paper_ste_linear_ste_lr paper_ste_linear paper|ste_lr3x paper_rho0.1|gradient_noise_ste_lr"}
SEEDS=${SEEDS:-"3 4 5 6 7"}
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
mkdir -p "$OUT/logs"
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/fogzo_jax_cache
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
pip_target() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
                 --upgrade --target /tmp/site "$@"; }
if ls .whl/*.whl > /dev/null 2>&1; then
  pip_target .whl/*.whl || { echo "gpu_job: installing .whl/*.whl failed"; exit 1; }
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout, not an installed copy
IMPORTS="import grain, ml_collections, tensorboardX, orbax.checkpoint, fogzo_jax.train.loop"
if ! python3 -c "$IMPORTS" > "$OUT/logs/imports.txt" 2>&1; then
  if ls .whl/extra/*.whl > /dev/null 2>&1 && pip_target .whl/extra/*.whl \
      && python3 -c "$IMPORTS" >> "$OUT/logs/imports.txt" 2>&1; then
    echo "imports: needed .whl/extra" >> "$OUT/logs/imports.txt"
  else
    tail -n 5 "$OUT/logs/imports.txt"; echo "gpu_job: the imports failed (above)"; exit 1
  fi
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c "import sys, jax, flax, optax, grain, orbax.checkpoint as o; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, jax.devices())"
} > "$OUT/logs/machine.txt" 2>&1 || { cat "$OUT/logs/machine.txt"; echo "gpu_job: JAX found no usable device"; exit 1; }
# Amendment 85: under the LLaMA grid's flags (no autotuning) a full-width ResNet-18 stepped at
# 12.6 s per step with ten processes on the GPU (amendment 84; alone at XLA's defaults a bigger
# step took 16 ms). So convolutional models keep XLA's autotuning (cuDNN's algorithm choice) and
# turn off only the Triton GEMM fusions whose autotuning took minutes in amendment 10. Untested.
# Amendment 90: DeiT too (its patch embedding is a convolution).
case $MODEL in
  resnet*|deit*) CANDIDATES=("--xla_gpu_enable_triton_gemm=false" "") ;;
  *) CANDIDATES=("--xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=0"
                 "--xla_gpu_autotune_level=0" "") ;;
esac
for flags in "${CANDIDATES[@]}"; do
  if XLA_FLAGS="${XLA_FLAGS:-} $flags" JAX_DEFAULT_MATMUL_PRECISION=highest timeout 120 python3 -c \
      "import jax, jax.numpy as jnp; x = jnp.ones((512, 512)); jax.block_until_ready(jax.jit(lambda a: a @ a)(x))" \
      >> "$OUT/logs/machine.txt" 2>&1; then
    GRID_XLA_FLAGS="${XLA_FLAGS:-} $flags"; break  # for the grid only: the bench keeps defaults
  fi
done
echo "grid XLA_FLAGS=${GRID_XLA_FLAGS:-}" >> "$OUT/logs/machine.txt"
cat "$OUT/logs/machine.txt"

queue() {  # "setting seed" lines: each tier seed by seed, tier 1 first; finished runs left out
  local tiers tier seed s
  IFS='|' read -ra tiers <<< "$TIERS"
  for tier in "${tiers[@]}"; do
    for seed in $SEEDS; do for s in $tier; do
      [ -e "runs/gpu/$MODEL/$STAGE/${s}_s${seed}/summary.json" ] || echo "$s $seed"
    done; done
  done
}
# DONE (optional): the runs/gpu folder of an earlier lease, carried (see the page's section 5).
# Its finished runs (those with summary.json) are copied in and not trained again (summary.txt
# marks them); the study script checks that each one ran the config it would run.
if [ -n "${DONE:-}" ]; then
  [ -d "$DONE/$MODEL/$STAGE" ] || { echo "gpu_job: DONE=$DONE has no $MODEL/$STAGE folder"; exit 1; }
  mkdir -p "runs/gpu/$MODEL/$STAGE"
  for d in "$DONE/$MODEL/$STAGE"/*/; do  # their names go to logs/copied.txt (summary.txt)
    [ -e "$d/summary.json" ] && cp -r "${d%/}" "runs/gpu/$MODEL/$STAGE/" \
      && basename "$d" >> "$OUT/logs/copied.txt"
  done
  echo "DONE: $(ls "runs/gpu/$MODEL/$STAGE" | wc -l) finished runs from $DONE; $(queue | wc -l) to run"
fi
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 15 \
  > "$OUT/logs/nvidia_smi.csv" 2>&1 &
SMI=$!
# Amendment 10: float32 matmuls as on XLA:CPU (no TF32 rounding in the ± losses); processes share
# the GPU, so memory is allocated on demand.
echo "[$(elapsed) s] grid: $MODEL ($STAGE), $WORKERS workers, deadline ${GRID_S} s"
queue | XLA_FLAGS="${GRID_XLA_FLAGS:-}" XLA_PYTHON_CLIENT_PREALLOCATE=false \
  JAX_DEFAULT_MATMUL_PRECISION=highest \
  timeout "$GRID_S" xargs -P "$WORKERS" -L 1 sh -c \
  "python3 experiments/where_fogzo_helps.py --model=$MODEL --stage=$STAGE --out=runs/gpu \
   --settings=\$0 --seeds=\$1 > $OUT/logs/\$0_s\$1.log 2>&1; \
   echo \"[\$0 s\$1] exit \$? at \$(( \$(date +%s) - $START )) s\"" &
# timeout leads a process group of its own with every run it started; at the deadline it sends
# SIGTERM to that group (each run saves a checkpoint and exits). Whatever of the group still runs
# 15 s later (zombies aside) is killed. Only this job's runs: a pattern (pkill -f) would also stop
# the same model's runs of anything else on the machine (it once stopped a CPU grid's run during a
# smoke test).
GRID=$!
wait "$GRID"
alive() { ps -e -o pgid=,stat= | awk -v g="$GRID" '$1 == g && $2 !~ /^Z/ {n++} END {exit !n}'; }
for _ in $(seq 15); do alive || break; sleep 1; done
if alive; then kill -KILL -- "-$GRID" 2> /dev/null; fi
kill "$SMI" 2> /dev/null
echo "[$(elapsed) s] grid over"

for m in llama_30m resnet18 deit_tiny; do
  left=$(( END_S - $(elapsed) ))
  [ "$left" -gt 45 ] || { echo "bench $m: not run (${left} s left)"; continue; }
  echo "[$(elapsed) s] bench $m (timeout ${left} s)"
  timeout "$left" python3 bench/step_time.py --models="$m" --fogzo_n=1 --nspsa_n= \
    --evaluation=vmap,sequential --repeats=20 --out="$OUT/logs/bench_$m.json" \
    > "$OUT/logs/bench_$m.log" 2>&1
  rc=$?; echo "[$(elapsed) s] bench $m exit $rc"; tail -n 8 "$OUT/logs/bench_$m.log"
done

python3 - "$MODEL/$STAGE" "$OUT/logs/copied.txt" > "$OUT/summary.txt" <<'EOF'
import glob, json, os, sys
copied = set(open(sys.argv[2]).read().split()) if os.path.exists(sys.argv[2]) else set()
for path in sorted(glob.glob(f"runs/gpu/{sys.argv[1]}/*/summary.json")):
  s = json.load(open(path))
  name = os.path.basename(os.path.dirname(path))
  print(name, *(f"{k}={s[k]:.6g}" for k in ("val_perplexity", "test_accuracy", "wall_time_s")
                if k in s),
        *(["(an earlier lease's, from DONE)"] if name in copied else []))
EOF
cat "$OUT/summary.txt"
tar czf "$OUT/results.tgz" --exclude='checkpoints' --exclude='*.orbax-checkpoint*' \
  "runs/gpu/$MODEL" -C "$OUT" logs 2>/dev/null
rm -rf "$OUT/logs"
echo "[$(elapsed) s] done"
