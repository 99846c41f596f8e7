#!/usr/bin/env bash
# Packs what a GPU run of scripts/gpu-check.sh needs on a host that has the
# CUDA 13 / cuDNN 9 runtime wheels (a PyTorch cu13 image) but no way to
# download: the onnxruntime-gpu and nvImageCodec wheels' libraries, the
# release binaries and test binaries, and JPEG 2000 films, in parts of at
# most ~55 MB each (.gpu/a, .gpu/b, .gpu/c), for hosts that take files in
# limited transfers. scripts/gpu-unpack.sh puts them together there.
#
# ONNX Runtime's CUDA provider is 284 MB, nearly all of it GPU code for six
# architectures; `--keep-arch 90` (default; Hopper: H100/H200) zeroes the
# others' code so it compresses to ~50 MB. The result runs only on that
# architecture: use the wheel itself anywhere else.
#
# Needs: make build, the test and bench binaries (below), downloaded wheels in
# $WHEELS (pip download --no-deps onnxruntime-gpu==1.31.1
# nvidia-nvimgcodec-cu13 nvidia-nvjpeg2k-cu13), opj_compress for the films.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-/tmp/gw}
KEEP_ARCH=${KEEP_ARCH:-90}
OUT=.gpu
rm -rf "$OUT" && mkdir -p "$OUT/a" "$OUT/b" "$OUT/c"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# a: the CUDA provider, other architectures zeroed.
unzip -q -o "$WHEELS"/onnxruntime_gpu-*.whl 'onnxruntime/capi/lib*' -d "$work"
python3 scripts/fatbin-keep-arch.py "$work/onnxruntime/capi/libonnxruntime_providers_cuda.so" \
    "$work/cuda.so" "$KEEP_ARCH"
xz -6 -T0 -c "$work/cuda.so" >"$OUT/a/libonnxruntime_providers_cuda.so.xz"

# b: nvImageCodec + nvJPEG2000 (wheel layout) and the JPEG 2000 films.
mkdir -p "$work/nv"
unzip -q -o "$WHEELS"/nvidia_nvimgcodec_cu13-*.whl 'nvidia/nvimgcodec/lib*' \
    'nvidia/nvimgcodec/extensions/*' -d "$work/nv"
unzip -q -o "$WHEELS"/nvidia_nvjpeg2k_cu13-*.whl 'nvidia/nvjpeg2k/lib/*' -d "$work/nv"
tar -C "$work/nv" -cJf "$OUT/b/nvidia-decode.tar.xz" nvidia
mkdir -p "$OUT/b/films-j2k"
./target/release/cxr-synth --out "$work/j2k" --count "${J2K_FILMS:-4}" --seed 77 \
    --size 2048x2048 --bits 12 --view pa -t j2k-lossless >/dev/null
./target/release/cxr-synth --out "$work/j2ki" --count "${J2K_FILMS:-6}" --seed 78 \
    --size 2048x2048 --bits 12 --view pa -t j2k >/dev/null
for f in "$work"/j2k/*.dcm; do cp "$f" "$OUT/b/films-j2k/lossless-$(basename "$f")"; done
for f in "$work"/j2ki/*.dcm; do cp "$f" "$OUT/b/films-j2k/lossy-$(basename "$f")"; done
# onnxconverter-common, for the DenseNet-121 benchmark model's fp16 variant.
mkdir -p "$OUT/a/wheels"
cp "$WHEELS"/onnxconverter_common-*.whl "$OUT/a/wheels/" 2>/dev/null || true
for f in test-images/generated/RG1_{J2KR,J2KI,HTJ2K,HTJ2KL}.dcm; do
    [ -f "$f" ] && cp "$f" "$OUT/b/films-j2k/"
done

# c: ONNX Runtime's main library and the binaries.
tar -C "$work/onnxruntime/capi" -cJf "$OUT/c/onnxruntime.tar.xz" \
    "$(cd "$work/onnxruntime/capi" && ls libonnxruntime.so.*)" libonnxruntime_providers_shared.so
mkdir -p "$work/bin"
cp target/release/cxr-triage target/release/cxr-synth "$work/bin/"
for spec in "${GPU_TEST_BIN:-}:engine-tests" "${NVIMG_TEST_BIN:-}:nvimgcodec-tests" \
    "${ENGINE_BENCH_BIN:-}:engine-bench"; do
    src=${spec%%:*}
    [ -n "$src" ] && cp "$src" "$work/bin/${spec##*:}"
done
strip "$work"/bin/* 2>/dev/null || true
tar -C "$work" -cJf "$OUT/c/bin.tar.xz" bin
du -sh "$OUT"/*
