#!/usr/bin/env bash
# On the GPU host: unpacks whichever parts of scripts/gpu-pack.sh's .gpu/
# are present into $SITE (default /tmp/site) in the wheels' layout
# (SITE/onnxruntime/capi, SITE/nvidia/{nvimgcodec,nvjpeg2k}), links the
# host's own NVIDIA CUDA 13 / cuDNN wheels into SITE/nvidia, and prints the
# environment for scripts/gpu-check.sh. Python's own lzma/tarfile do the
# unpacking (the host may have no xz).
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=${SITE:-/tmp/site}
mkdir -p "$SITE/onnxruntime/capi" "$SITE/nvidia" "$SITE/bin" "$SITE/films-j2k"
python3 - "$SITE" <<'PY'
import glob, lzma, os, shutil, sys, tarfile
site = sys.argv[1]
cuda = ".gpu/a/libonnxruntime_providers_cuda.so.xz"
if os.path.exists(cuda):
    with lzma.open(cuda) as src, open(f"{site}/onnxruntime/capi/libonnxruntime_providers_cuda.so", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    print("unpacked the CUDA provider")
for archive, into in [(".gpu/b/nvidia-decode.tar.xz", site),
                      (".gpu/c/onnxruntime.tar.xz", f"{site}/onnxruntime/capi"),
                      (".gpu/c/bin.tar.xz", site)]:
    if os.path.exists(archive):
        with tarfile.open(archive) as t:
            t.extractall(into)
        print("unpacked", archive)
for film in glob.glob(".gpu/b/films-j2k/*.dcm"):
    shutil.copy(film, f"{site}/films-j2k/")
# The host's NVIDIA runtime wheels (CUDA 13, cuDNN 9), linked beside ours.
for path in sys.path:
    nvidia = os.path.join(path, "nvidia")
    if path and os.path.isdir(nvidia) and os.path.realpath(nvidia) != os.path.realpath(f"{site}/nvidia"):
        for package in os.listdir(nvidia):
            link = f"{site}/nvidia/{package}"
            if os.path.isdir(os.path.join(nvidia, package)) and not os.path.exists(link):
                os.symlink(os.path.join(nvidia, package), link)
        break
PY
chmod +x "$SITE"/bin/* 2>/dev/null || true
ls "$SITE/onnxruntime/capi" "$SITE/nvidia" "$SITE/bin" 2>/dev/null | tr '\n' ' '; echo
