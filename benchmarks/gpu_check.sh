#!/usr/bin/env bash
# The GPU numbers of issue 27 from one command, within 8 minutes on one H100:
#
#   bash benchmarks/gpu_check.sh [DATA_ROOT]      # DATA_ROOT default ../shared/data
#
# Steps (each in its own time budget; a failed or timed-out step is reported and the next
# one runs; the exit status is 1 when any failed):
#   devices     nvidia-smi, TensorFlow's and PyTorch's view of the GPU
#   torch-venv  .venv-torch from benchmarks/requirements-torch.txt, when missing (in the
#               background, during the two grids)
#   goemotions  1 seed of experiments/goemotions.yaml's baseline at full size: all 43,410
#               train rows (data.max_train_rows=null), 1 epoch
#   ray-grid    experiments/gpu_check_ray.yaml, 2 runs as Ray tasks with --gpus-per-run 0.5
#   throughput  train_throughput.py's BERT-base-shaped section (length 128, batch 32, float32
#               and bfloat16, xtune and PyTorch) on the GPU, run last on a quiet machine
# Output: ${OUT:-benchmarks/gpu_check_out}/ holds a log per step, steps.tsv and summary.md
# (the lines to paste into benchmarks/README.md); run folders and grid results go to
# ${WORK:-$OUT/work}. Environment overrides: XTUNE_PYTHON, XTUNE, TORCH_VENV, TORCH_PYTHON,
# THROUGHPUT_STEPS, THROUGHPUT_REPEATS, GPUS_PER_RUN and BUDGET_<STEP> (seconds).
# Needs: `make install` (.venv with xtune and Ray) and a TensorFlow that sees the GPU
# (`.venv/bin/pip install "tensorflow[and-cuda]==2.21.0"`: the pinned wheel lacks CUDA's
# libraries); the network for .venv-torch, else a python3 with torch and transformers.
set -euo pipefail

caller=$(pwd)
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
absolute() { case $1 in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac }

DATA_ROOT=$(absolute "${1:-$repo/../shared/data}")
OUT=$(absolute "${OUT:-$repo/benchmarks/gpu_check_out}")
WORK=$(absolute "${WORK:-$OUT/work}")
cd "$repo"
XTUNE_PYTHON=${XTUNE_PYTHON:-.venv/bin/python}
XTUNE=${XTUNE:-.venv/bin/xtune}
TORCH_VENV=${TORCH_VENV:-.venv-torch}
TORCH_PYTHON=${TORCH_PYTHON:-$TORCH_VENV/bin/python}
THROUGHPUT_STEPS=${THROUGHPUT_STEPS:-20}
THROUGHPUT_REPEATS=${THROUGHPUT_REPEATS:-3}
GPUS_PER_RUN=${GPUS_PER_RUN:-0.5}  # 0 only to smoke-test the Ray step on a machine without GPU
# Budgets: 30 + 180 + 120 + 150 = 480 s in sequence; the torch install overlaps the grids.
BUDGET_DEVICES=${BUDGET_DEVICES:-30}
BUDGET_TORCH_VENV=${BUDGET_TORCH_VENV:-290}
BUDGET_GOEMOTIONS=${BUDGET_GOEMOTIONS:-180}
BUDGET_RAY_GRID=${BUDGET_RAY_GRID:-120}
BUDGET_THROUGHPUT=${BUDGET_THROUGHPUT:-150}
export DATA_ROOT OUT WORK XTUNE_PYTHON XTUNE TORCH_VENV TORCH_PYTHON
export THROUGHPUT_STEPS THROUGHPUT_REPEATS GPUS_PER_RUN
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

# ------------------------------------------------------------------ helpers

# start_step NAME BUDGET FUNCTION: the function in a fresh bash under `timeout` (which ends
# its whole process group when the budget is spent), in the background, output to
# OUT/NAME.log. finish_step NAME waits for it and appends "NAME status seconds budget" to
# OUT/steps.tsv. Neither fails, so a failed step does not stop the script.
declare -A step_pid step_started step_budget
start_step() {
    local name=$1 budget=$2 function=$3
    echo "[gpu_check] $(date -u +%H:%M:%S) $name (budget ${budget} s)"
    step_started[$name]=$(date +%s)
    step_budget[$name]=$budget
    timeout --kill-after=15 "$budget" bash -c "set -euo pipefail; $function" \
        >"$OUT/$name.log" 2>&1 &
    step_pid[$name]=$!
}

finish_step() {
    local name=$1 status=0 verdict=ok seconds
    wait "${step_pid[$name]}" || status=$?
    unset "step_pid[$name]"
    seconds=$(($(date +%s) - ${step_started[$name]}))
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        verdict="FAILED (over its ${step_budget[$name]} s budget)"
    elif [ "$status" -ne 0 ]; then
        verdict="FAILED (exit $status)"
    fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$verdict" "$seconds" "${step_budget[$name]}" \
        >>"$OUT/steps.tsv"
    echo "[gpu_check] $(date -u +%H:%M:%S) $name: $verdict in ${seconds} s (log $OUT/$name.log)"
}

run_step() {
    start_step "$@"
    finish_step "$1"
}

# Interrupted: `timeout` passes the signal on to its step's processes.
stop_steps() {
    echo "[gpu_check] interrupted: stopping ${!step_pid[*]}"
    [ "${#step_pid[@]}" -eq 0 ] || kill -TERM "${step_pid[@]}" 2>/dev/null || true
    wait
    exit 130
}

# The PyTorch side's interpreter: the pinned venv, else a python3 that has torch and
# transformers (a GPU image with PyTorch and no network), else the venv's path (missing).
torch_python() {
    if "$TORCH_PYTHON" -c 'import torch, transformers' 2>/dev/null; then
        echo "$TORCH_PYTHON"
    elif python3 -c 'import torch, transformers' 2>/dev/null; then
        command -v python3
    else
        echo "$TORCH_PYTHON"
    fi
}

# ------------------------------------------------------------------ steps

step_devices() {
    local failed=0
    nvidia-smi || failed=1
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader |
        sed 's/^/GPU: /' || failed=1
    "$XTUNE_PYTHON" -c '
import sys, tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
print("TF", tf.__version__, "built with CUDA:", tf.test.is_built_with_cuda(), "GPUs:", names)
if not gpus:
    sys.exit(f"TF sees no GPU: pip install \"tensorflow[and-cuda]=={tf.__version__}\" in .venv")
' || failed=1
    "$(torch_python)" -c '
import sys, torch, transformers
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print("torch", torch.__version__, "CUDA", torch.version.cuda, "GPU:", gpu,
      "transformers", transformers.__version__, "python", sys.executable)
if not torch.cuda.is_available():
    sys.exit("torch sees no GPU (torch.cuda.is_available() is False)")
' || failed=1
    return "$failed"
}

step_torch_venv() {
    if "$TORCH_PYTHON" -c 'import torch, transformers' 2>/dev/null; then
        echo "$TORCH_PYTHON already has torch and transformers"
        return 0
    fi
    local base=python3.11
    command -v "$base" >/dev/null || base=python3
    "$base" -m venv "$TORCH_VENV"
    "$TORCH_VENV/bin/pip" install --progress-bar off -r benchmarks/requirements-torch.txt
    "$TORCH_PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.cuda.is_available())'
}

step_goemotions() {
    test -f "$DATA_ROOT/goemotions/train.tsv" ||
        { echo "no $DATA_ROOT/goemotions/train.tsv: pass DATA_ROOT"; return 1; }
    rm -rf "$WORK/goemotions"
    "$XTUNE" grid experiments/goemotions.yaml --only "baseline (mean pooling, bce)" \
        --max-runs 1 --output "$WORK/goemotions" \
        --set "data.root=$DATA_ROOT/goemotions" --set data.max_train_rows=null \
        --set "training.output_dir=$WORK/runs"
    grep -q '"status": "ok"' "$WORK/goemotions/results.jsonl"
}

step_ray_grid() {
    rm -rf "$WORK/ray_grid"
    # Each TensorFlow process takes GPU memory as it needs it, so two fit on one GPU.
    export TF_FORCE_GPU_ALLOW_GROWTH=true
    # A Ray instance of this step's own: ray.init() would otherwise join any cluster that
    # `ray start` left running on the machine (set RAY_ADDRESS to use one on purpose).
    export RAY_ADDRESS=${RAY_ADDRESS:-local}
    local sampler
    while sleep 1; do
        echo "$(date +%s) $(nvidia-smi --query-compute-apps=pid --format=csv,noheader | wc -l)"
    done >"$OUT/ray_gpu_processes.log" 2>/dev/null &
    sampler=$!
    local status=0
    "$XTUNE" grid experiments/gpu_check_ray.yaml --executor ray --gpus-per-run "$GPUS_PER_RUN" \
        --output "$WORK/ray_grid" --set "training.output_dir=$WORK/runs" || status=$?
    kill "$sampler" 2>/dev/null || true
    [ "$status" -eq 0 ] && [ "$(grep -c '"status": "ok"' "$WORK/ray_grid/results.jsonl")" -eq 2 ]
}

step_throughput() {
    "$XTUNE_PYTHON" benchmarks/train_throughput.py --device gpu --sections bert-base \
        --bert-base-steps "$THROUGHPUT_STEPS" --repeats "$THROUGHPUT_REPEATS" \
        --torch-python "$(torch_python)" --data-root "$DATA_ROOT"
    grep -q '^PyTorch side:' "$OUT/throughput.log" || { echo "no PyTorch side"; return 1; }
}

export -f torch_python step_devices step_torch_venv step_goemotions step_ray_grid \
    step_throughput

# ------------------------------------------------------------------ run

mkdir -p "$OUT" "$WORK"
rm -f "$OUT/steps.tsv"
started=$(date +%s)
echo "[gpu_check] $(date -u) in $repo; data $DATA_ROOT; output $OUT"

trap stop_steps INT TERM
run_step devices "$BUDGET_DEVICES" step_devices
start_step torch-venv "$BUDGET_TORCH_VENV" step_torch_venv # during the grids
run_step goemotions "$BUDGET_GOEMOTIONS" step_goemotions
run_step ray-grid "$BUDGET_RAY_GRID" step_ray_grid
finish_step torch-venv
run_step throughput "$BUDGET_THROUGHPUT" step_throughput
trap - INT TERM

echo "[gpu_check] total $(($(date +%s) - started)) s"
python3 benchmarks/gpu_check_summary.py "$OUT" "$WORK" | tee "$OUT/summary.md"
if grep -q FAILED "$OUT/steps.tsv"; then
    echo "[gpu_check] some steps FAILED: see their logs in $OUT"
    exit 1
fi
