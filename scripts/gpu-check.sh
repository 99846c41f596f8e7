#!/usr/bin/env bash
# One run on a GPU host that proves the CUDA path and takes the figures the
# README's "GPU" section reports, side by side with the CPU in the same run.
#
# Before it: `make build` (the release `cxr-triage` and `cxr-synth`), and the
# onnxruntime-gpu wheel in .venv instead of onnxruntime (README, "GPU").
# Everything goes to $OUT (default ./gpu-report): nvidia-smi, `models check`
# on CUDA (float32 and fp16), the GPU tests (when GPU_TESTS=1: they compile
# in release mode, a few minutes), and `cxr-triage bench` on the CPU, on
# CUDA, CUDA fp16 and CUDA fp16 with I/O binding, as JSON and text.
# A step that fails is reported and the others still run; the exit status
# says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-gpu-report}
BIN=${BIN:-./target/release/cxr-triage}
SYNTH=${SYNTH:-./target/release/cxr-synth}
FILMS=${FILMS:-32}       # synthetic 2048 x 2048 films for the pipeline runs
REQUESTS=${REQUESTS:-256} # pipeline images per concurrency level
mkdir -p "$OUT"
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    ORT_DYLIB_PATH=$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1)
    export ORT_DYLIB_PATH
fi
if [ ! -x "$BIN" ] || [ ! -x "$SYNTH" ] || [ -z "$ORT_DYLIB_PATH" ]; then
    echo "gpu-check: needs $BIN and $SYNTH (make build) and ONNX Runtime in .venv (scripts/setup.sh run)" >&2
    exit 2
fi
if ! ls "$(dirname "$ORT_DYLIB_PATH")"/libonnxruntime_providers_cuda.so >/dev/null 2>&1; then
    echo "gpu-check: $ORT_DYLIB_PATH is the CPU-only onnxruntime; install onnxruntime-gpu (README, GPU)" >&2
    exit 2
fi

failed=()
step() { # step NAME COMMAND...: run, log to $OUT/NAME.txt, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    local t0=$SECONDS
    if "$@" >"$OUT/$name.txt" 2>&1; then
        echo "   ok ($((SECONDS - t0)) s)"
    else
        echo "   FAILED ($((SECONDS - t0)) s), see $OUT/$name.txt"
        failed+=("$name")
    fi
}

step nvidia-smi nvidia-smi
step check-cuda "$BIN" models check models --provider cuda
step check-cuda-fp16 "$BIN" models check models --provider cuda --fp16
if [ "${GPU_TESTS:-0}" = 1 ]; then
    step gpu-tests env CXR_GPU_TESTS=1 cargo test --release --locked -p cxr-findings --test engine -- --ignored engine_gpu
fi
# The films the pipeline runs read: 2048 x 2048, 12-bit, uncompressed.
FILMS_DIR="$OUT/films"
step films "$SYNTH" --out "$FILMS_DIR" --count "$FILMS" --seed 77 --size 2048x2048 --bits 12 --view pa
bench() { # bench NAME ARGS...: inference per batch size and the whole pipeline
    step "bench-$1" "$BIN" bench --images "$FILMS_DIR" --requests "$REQUESTS" \
        --batch 1,8,32 --concurrency 1,4,16 --json "$OUT/bench-$1.json" "${@:2}"
    # A CUDA run that fell back to the CPU must not pass for GPU figures.
    case "$1" in cuda*)
        if ! grep -q '"provider": *"cuda"' "$OUT/bench-$1.json" 2>/dev/null; then
            echo "   NOT ON CUDA: see the warning in $OUT/bench-$1.txt"
            failed+=("bench-$1 (not on CUDA)")
        fi ;;
    esac
}
bench cpu --provider cpu
bench cuda --provider cuda
bench cuda-fp16 --provider cuda --fp16
bench cuda-fp16-binding --provider cuda --fp16 --io-binding

echo "gpu-check: results in $OUT/"
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu-check: failed: ${failed[*]}" >&2
    exit 1
fi
