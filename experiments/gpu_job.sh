#!/usr/bin/env bash
# Issue 14's GPU job (amendments 9 and 10 of docs/results/where_fogzo_helps.md), one call of a
# lent GPU machine: the `llama_9m_long` confirmation runs, then GPU step times if time is left.
#
#   bash experiments/gpu_job.sh OUT [GRID_SECONDS] [END_SECONDS] [WORKERS]
#
# Needs runs/gpu/llama_tiny/**/summary.json (the small LLaMA's tuning summaries, from which the
# transferred settings are read; the page says how to copy them). The 25 (setting, seed) runs go
# through one queue, seed by seed (all five settings of seed 3, then seed 4, …), WORKERS at a
# time sharing the GPU, so a deadline leaves whole seeds. At GRID_SECONDS the runs still going are
# stopped (SIGTERM: each saves a checkpoint and exits; their workdirs have no summary.json and do
# not count). bench/step_time.py then runs per model until END_SECONDS. Everything written (runs
# without checkpoints, logs, bench JSON) is packed into OUT/results.tgz; OUT/summary.txt lists the
# finished runs.
#
# Amendment 10 ran it (at ab1770b) with 8 workers and XLA's defaults: every process spent 309-394 s
# of the 470 s compiling its step (XLA's slow-compile alarm on the float32 `gemm_fusion_dot`
# modules, 4m19-4m39 each), then stepped at 14-22 steps/s. Since then: one worker per setting by
# default (5 since amendment 16 added `paper_ste_linear`), so later seeds reuse the persistent
# compilation cache instead of compiling the same program at once; and XLA flags that skip GEMM
# autotuning, each candidate first tried on a small jitted matmul (an XLA that does not know a
# flag aborts; then the next candidate, finally none), the one used written to logs/machine.txt.
set -u
OUT=${1:?usage: gpu_job.sh OUT [GRID_SECONDS] [END_SECONDS] [WORKERS]}
GRID_S=${2:-480}
END_S=${3:-560}
WORKERS=${4:-5}
MODEL=llama_9m_long  # its five settings are named in the queue below
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
mkdir -p "$OUT/logs"
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/fogzo_jax_cache
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout, not an installed copy

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c "import sys, jax, flax, optax, grain, orbax.checkpoint as o; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, jax.devices())"
} > "$OUT/logs/machine.txt" 2>&1 || { cat "$OUT/logs/machine.txt"; echo "gpu_job: the imports failed"; exit 1; }
for flags in "--xla_gpu_enable_triton_gemm=false --xla_gpu_autotune_level=0" \
             "--xla_gpu_autotune_level=0" ""; do
  if XLA_FLAGS="${XLA_FLAGS:-} $flags" JAX_DEFAULT_MATMUL_PRECISION=highest timeout 300 python3 -c \
      "import jax, jax.numpy as jnp; x = jnp.ones((512, 512)); jax.block_until_ready(jax.jit(lambda a: a @ a)(x))" \
      >> "$OUT/logs/machine.txt" 2>&1; then
    GRID_XLA_FLAGS="${XLA_FLAGS:-} $flags"; break  # for the grid only: the bench keeps defaults
  fi
done
echo "grid XLA_FLAGS=${GRID_XLA_FLAGS:-}" >> "$OUT/logs/machine.txt"
cat "$OUT/logs/machine.txt"

# Amendment 10: float32 matmuls as on XLA:CPU (no TF32 rounding in the ± losses); processes share
# the GPU, so memory is allocated on demand.
echo "[$(elapsed) s] grid: $MODEL, $WORKERS workers, deadline ${GRID_S} s"
seq 0 24 | XLA_FLAGS="${GRID_XLA_FLAGS:-}" XLA_PYTHON_CLIENT_PREALLOCATE=false \
  JAX_DEFAULT_MATMUL_PRECISION=highest \
  timeout "$GRID_S" xargs -P "$WORKERS" -I{} sh -c \
  "python3 experiments/where_fogzo_helps.py --model=$MODEL --stage=confirm --out=runs/gpu \
   --settings=ste,paper,paper_ste_linear,paper_rho0.1,ste_lr3x --shard={}/25 > $OUT/logs/job{}.log 2>&1; \
   echo \"[job {}] exit \$? at \$(( \$(date +%s) - $START )) s\""
pkill -TERM -f "where_fogzo_helps.py --model=$MODEL" && sleep 15
pkill -KILL -f "where_fogzo_helps.py --model=$MODEL"
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

python3 - "$MODEL" > "$OUT/summary.txt" <<'EOF'
import glob, json, os, sys
for path in sorted(glob.glob(f"runs/gpu/{sys.argv[1]}/confirm/*/summary.json")):
  s = json.load(open(path))
  print(os.path.basename(os.path.dirname(path)), *(f"{k}={s[k]:.6g}" for k in
        ("val_perplexity", "wall_time_s") if k in s))
EOF
cat "$OUT/summary.txt"
tar czf "$OUT/results.tgz" --exclude='checkpoints' --exclude='*.orbax-checkpoint*' \
  "runs/gpu/$MODEL" -C "$OUT" logs 2>/dev/null
rm -rf "$OUT/logs"
echo "[$(elapsed) s] done"
