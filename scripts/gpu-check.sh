#!/usr/bin/env bash
# One run on a GPU host that proves the CUDA path and takes the figures the
# README's "GPU" section reports, side by side with the CPU in the same run.
#
# Before it: `make build` (the release `cxr-triage` and `cxr-synth`), and the
# onnxruntime-gpu wheel (with nvidia-nvimgcodec-cu13 and nvidia-nvjpeg2k-cu13
# for JPEG 2000 on the GPU) in .venv instead of onnxruntime (README, "GPU").
# Everything goes to $OUT (default ./gpu-report): nvidia-smi, `models check`
# on CUDA (float32 and fp16), the GPU tests (GPU_TESTS=1: compiled in release
# mode unless GPU_TEST_BIN / NVIMG_TEST_BIN name prebuilt test binaries),
# `cxr-triage bench` on the CPU and on CUDA (float32, fp16, fp16 with I/O
# binding) for the reference model and, when made, DenseNet-121 @ 512
# (models/bench), on uncompressed films and on JPEG 2000 films decoded on the
# GPU and on the CPU, and the criterion engine benches on CUDA
# (ENGINE_BENCH_BIN, or cargo). Each step has a time limit (STEP_S); a step
# that fails is reported and the others still run; the exit status says
# whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-gpu-report}
BIN=${BIN:-./target/release/cxr-triage}
SYNTH=${SYNTH:-./target/release/cxr-synth}
FILMS=${FILMS:-32}          # synthetic 2048 x 2048 films for the pipeline runs
REQUESTS=${REQUESTS:-256}   # pipeline images per concurrency level
CONCURRENCY=${CONCURRENCY:-1,4,16,64}
STEP_S=${STEP_S:-120}       # time limit of one step, seconds
J2K_DIR=${J2K_DIR:-}        # JPEG 2000 films (e.g. cxr-synth -t j2k-lossless)
J2K_REQUESTS=${J2K_REQUESTS:-96} # pipeline images per concurrency level on them
DENSENET_DIR=${DENSENET_DIR:-models/bench}
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
step() { # step NAME COMMAND...: run (at most STEP_S), log to $OUT/NAME.txt, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    local t0=$SECONDS
    if timeout "$STEP_S" "$@" >"$OUT/$name.txt" 2>&1; then
        echo "   ok ($((SECONDS - t0)) s)"
    else
        echo "   FAILED ($((SECONDS - t0)) s), see $OUT/$name.txt"
        tail -5 "$OUT/$name.txt" | sed 's/^/   | /'
        failed+=("$name")
    fi
}

step nvidia-smi nvidia-smi
step check-cuda "$BIN" models check models --provider cuda
step check-cuda-fp16 "$BIN" models check models --provider cuda --fp16
if [ "${GPU_TESTS:-0}" = 1 ]; then
    if [ -n "${GPU_TEST_BIN:-}" ]; then
        step gpu-tests env CXR_GPU_TESTS=1 "$GPU_TEST_BIN" --ignored engine_gpu
    else
        step gpu-tests env CXR_GPU_TESTS=1 cargo test --release --locked -p cxr-findings --test engine -- --ignored engine_gpu
    fi
    if [ -n "${NVIMG_TEST_BIN:-}" ]; then
        step gpu-tests-nvimgcodec env CXR_GPU_TESTS=1 "$NVIMG_TEST_BIN" --ignored --nocapture
    else
        step gpu-tests-nvimgcodec env CXR_GPU_TESTS=1 cargo test --release --locked -p cxr-nvimgcodec --test nvimgcodec -- --ignored --nocapture
    fi
fi
# The films the pipeline runs read: 2048 x 2048, 12-bit, uncompressed.
FILMS_DIR="$OUT/films"
step films "$SYNTH" --out "$FILMS_DIR" --count "$FILMS" --seed 77 --size 2048x2048 --bits 12 --view pa
rm -f "$FILMS_DIR"/*.jsonl "$FILMS_DIR"/*.csv
bench() { # bench NAME ARGS...: inference per batch size and the whole pipeline
    step "bench-$1" "$BIN" bench --requests "${REQ:-$REQUESTS}" \
        --batch 1,8,32 --concurrency "$CONCURRENCY" --json "$OUT/bench-$1.json" "${@:2}"
    grep -E "^(model|inference|pipeline|JPEG|  1\.)" "$OUT/bench-$1.txt" 2>/dev/null | sed 's/^/   /'
    # A CUDA run that fell back to the CPU must not pass for GPU figures.
    case "$1" in *cuda*)
        if ! grep -q '"provider": *"cuda"' "$OUT/bench-$1.json" 2>/dev/null; then
            echo "   NOT ON CUDA: see the warning in $OUT/bench-$1.txt"
            failed+=("bench-$1 (not on CUDA)")
        fi ;;
    esac
}
# Most telling first, so that a run cut short still has them.
bench cuda --images "$FILMS_DIR" --provider cuda
if [ -n "$J2K_DIR" ]; then
    REQ=$J2K_REQUESTS bench cuda-j2k-gpu --images "$J2K_DIR" --provider cuda --jpeg2000 gpu
fi
if ls "$DENSENET_DIR"/densenet121-bench.onnx >/dev/null 2>&1; then
    bench densenet-cuda --models "$DENSENET_DIR" --images "$FILMS_DIR" --provider cuda --max-batch 32
    if [ -n "$J2K_DIR" ]; then
        REQ=$J2K_REQUESTS bench densenet-cuda-j2k-gpu --models "$DENSENET_DIR" --images "$J2K_DIR" --provider cuda --max-batch 32 --jpeg2000 gpu
    fi
    bench densenet-cuda-fp16 --models "$DENSENET_DIR" --images "$FILMS_DIR" --provider cuda --fp16 --max-batch 32
fi
bench cpu --images "$FILMS_DIR" --provider cpu
if [ -n "$J2K_DIR" ]; then
    REQ=$J2K_REQUESTS bench cuda-j2k-cpu --images "$J2K_DIR" --provider cuda --jpeg2000 cpu
fi
bench cuda-fp16 --images "$FILMS_DIR" --provider cuda --fp16
bench cuda-fp16-binding --images "$FILMS_DIR" --provider cuda --fp16 --io-binding
# Criterion's engine benches on CUDA (short runs).
if [ -n "${ENGINE_BENCH_BIN:-}" ]; then
    step engine-bench env CXR_BENCH_PROVIDER=cuda "$ENGINE_BENCH_BIN" --bench --warm-up-time 1 --measurement-time 3
elif [ "${ENGINE_BENCH:-0}" = 1 ]; then
    step engine-bench env CXR_BENCH_PROVIDER=cuda cargo bench --locked -p cxr-model --bench engine -- --warm-up-time 1 --measurement-time 3
fi

echo "gpu-check: results in $OUT/"
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu-check: failed: ${failed[*]}" >&2
    exit 1
fi
