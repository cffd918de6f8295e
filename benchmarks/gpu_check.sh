#!/usr/bin/env bash
# One-command GPU check: the GPU tests, the training and decoding benchmarks and one Multi30k epoch in bf16.
#
#   bash benchmarks/gpu_check.sh            # on a CUDA machine, from the repository root (< 8 min on one H200)
#   bash benchmarks/gpu_check.sh --dry-run  # anywhere: checks what it can without a GPU, runs nothing heavy
#
# Needs no network: the Python packages the machine lacks are installed from a wheel folder (WHEELS, default
# .whl/, git-ignored), which `python benchmarks/gpu_wheels.py fill` fills where PyPI is reachable. Every table
# and log goes to one folder, OUT (default logs/gpu_check/<time>): at most 8 files, flat, so that a remote
# runner can send them all back. Each stage has its own timeout; a failed stage is reported and the others still
# run; the exit status is 1 if any stage failed. Environment: PYTHON (default python3), WHEELS, OUT,
# GPU_CHECK_STAGES (the stages to run, default all: wheels tests training multi30k decoding).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown argument $arg (use --dry-run or --help)" >&2; exit 2 ;;
    esac
done

PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-$ROOT/.whl}"
OUT="${OUT:-$ROOT/logs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}"
STAGES="${GPU_CHECK_STAGES:-wheels tests training multi30k decoding}"
RUNS="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"  # run dirs and checkpoints: too many files for OUT
SITE="$RUNS/site"                                         # the installed wheels
mkdir -p "$OUT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
SUMMARY="$OUT/summary.md"
START=$SECONDS
FAILED=()

# Multi30k epoch: the Bahdanau experiment, one epoch, bf16 autocast.
TRAIN_ARGS=(experiment=multi30k_bahdanau trainer=gpu trainer.precision=bf16-mixed trainer.max_epochs=1
    trainer.enable_progress_bar=false logger=csv "paths.log_dir=$RUNS/logs/" "paths.cache_dir=$RUNS/cache/")

wants() { [[ " $STAGES " == *" $1 "* ]]; }

# stage NAME TIMEOUT_S COMMAND...: run COMMAND with a timeout, its output into OUT/NAME.log (and the terminal).
stage() {
    local name="$1" limit="$2"
    shift 2
    local began=$SECONDS
    echo "=== $name (timeout ${limit}s): $*"
    timeout --kill-after=15 "$limit" "$@" 2>&1 | tee -a "$OUT/$name.log"
    local status=${PIPESTATUS[0]}
    local took=$((SECONDS - began))
    if [[ $status -eq 0 ]]; then
        echo "| $name | ok | ${took} s |" >>"$SUMMARY"
    else
        [[ $status -eq 124 || $status -eq 137 ]] && status="$status (timed out after ${limit}s)"
        echo "| $name | FAILED: exit $status | ${took} s |" >>"$SUMMARY"
        echo "gpu_check: stage $name FAILED (exit $status); its log: $OUT/$name.log" >&2
        FAILED+=("$name")
    fi
    return 0
}

{
    echo "# GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ)$([[ $DRY_RUN -eq 1 ]] && echo ' (dry run)')"
    echo
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(with uncommitted changes)')"
    echo
    echo "| stage | result | time |"
    echo "|---|---|---|"
} >"$SUMMARY"

# 1. Python packages: those the machine lacks, from the wheel folder.
if wants wheels; then
    if [[ $DRY_RUN -eq 1 ]]; then
        stage wheels 120 "$PYTHON" benchmarks/gpu_wheels.py check --dir "$WHEELS"
    else
        stage wheels 180 bash -c "$(printf '%q ' "$PYTHON") -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target $(printf '%q' "$SITE") $(printf '%q' "$WHEELS")/*.whl"
        export PYTHONPATH="$PYTHONPATH:$SITE"  # after src/: the machine's own packages keep their place
    fi
fi
if [[ $DRY_RUN -eq 0 ]]; then
    {
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
        "$PYTHON" -c "import torch, lightning; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
'cuDNN', torch.backends.cudnn.version(), 'lightning', lightning.__version__, 'GPU', torch.cuda.is_available())"
    } >"$OUT/environment.txt" 2>&1
    cat "$OUT/environment.txt"
fi

# 2. The GPU tests (tests/test_gpu.py and any other test marked gpu).
if wants tests; then
    if [[ $DRY_RUN -eq 1 ]]; then  # collected, and skipped without CUDA
        stage tests 180 "$PYTHON" -m pytest -q -m gpu -rs tests/test_gpu.py
    else
        stage tests 300 "$PYTHON" -m pytest -q -m gpu -rs --durations=10 tests
    fi
fi

# 3. The training benchmark: both sizes, bf16 rows, a short step count.
if wants training; then
    if [[ $DRY_RUN -eq 1 ]]; then
        stage training 120 "$PYTHON" benchmarks/training.py --help
    else
        stage training 240 "$PYTHON" benchmarks/training.py --device cuda --sections grid length epoch \
            --steps 5 --repeats 2 --epoch-batches 60
    fi
fi

# 4. One Multi30k epoch of the Bahdanau model in bf16: wall time and val BLEU; its checkpoint feeds stage 5.
if wants multi30k; then
    if [[ $DRY_RUN -eq 1 ]]; then
        stage multi30k 120 "$PYTHON" src/train.py "${TRAIN_ARGS[@]}" --cfg job --resolve
    else
        stage multi30k 300 "$PYTHON" src/train.py "${TRAIN_ARGS[@]}"
        RUN_DIR="$(ls -d "$RUNS"/logs/train/runs/* 2>/dev/null | tail -n 1)"
        if [[ -n "$RUN_DIR" && -f "$RUN_DIR/metrics.json" ]]; then
            {
                echo
                echo "Multi30k, experiment=multi30k_bahdanau trainer=gpu trainer.precision=bf16-mixed, 1 epoch:"
                echo "wall time of src/train.py (data preparation, fit, validate and test included):" \
                    "$(grep -o '| multi30k | [^|]* | [0-9]* s |' "$SUMMARY" | awk -F'|' '{print $4}')"
                echo '```json'
                cat "$RUN_DIR/metrics.json"
                echo '```'
            } >>"$OUT/multi30k.log"
        fi
    fi
fi

# 5. The decoding benchmark on that checkpoint.
if wants decoding; then
    if [[ $DRY_RUN -eq 1 ]]; then
        stage decoding 120 "$PYTHON" benchmarks/decoding.py --help
    else
        CKPT="$(ls "${RUN_DIR:-/nonexistent}"/checkpoints/best.ckpt 2>/dev/null)"
        if [[ -z "$CKPT" ]]; then
            echo "| decoding | FAILED: no checkpoint from the multi30k stage | 0 s |" >>"$SUMMARY"
            echo "gpu_check: stage decoding FAILED: no checkpoint from the multi30k stage" >&2
            FAILED+=(decoding)
        else
            stage decoding 180 "$PYTHON" benchmarks/decoding.py --ckpt "$CKPT" --device cuda --repeats 2
        fi
    fi
fi

TOTAL=$((SECONDS - START))
echo >>"$SUMMARY"
echo "total: ${TOTAL} s" >>"$SUMMARY"
rm -rf "$RUNS"
cat "$SUMMARY"
echo "gpu_check: total ${TOTAL} s; tables and logs in $OUT"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "gpu_check: FAILED stages: ${FAILED[*]}" >&2
    exit 1
fi
