#!/usr/bin/env python3
"""Side by side: the whole scoring pipeline, cxr-triage vs the Python one a
user would otherwise write, same model, same files, same thread count, one run.

Usage:
    python benches/baseline/pipeline_compare.py [FILE.dcm ...] [--repeat N]
        [--binary target/release/cxr-triage] [--json-out results.json]

Per image, single-threaded on both sides, batch 1, CPU:

- Python: pydicom.dcmread + pixel_array (pylibjpeg plugins) + modality LUT +
  VOI + MONOCHROME1 inversion (benches/baseline/pydicom_decode.py), then a
  numpy letterbox with area resampling to the model's 256 x 256 (weight
  matrices, as a numpy user would write it), normalisation to [-1, 1], and
  onnxruntime.InferenceSession.run (intra/inter-op threads 1) on
  models/cxr-reference-v1.onnx, then a sigmoid on the scores.
- ours: `cxr-triage bench --images DIR --batch 1 --concurrency 1 --threads 1`
  (RAYON_NUM_THREADS=1): decode + preprocess + the batching engine +
  findings, heatmap and regions per image ("pipeline, 1 workers").

Both are run alternately, N rounds; the table shows images/s medians and the
ratio ours / Python.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pydicom_decode import pipeline as decode  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "cxr-reference-v1.onnx"
SIZE = 256
DEFAULT_FILES = ["RG1_UNCR.dcm", "RG1_RLE.dcm", "RG1_JLSL.dcm", "RG1_J2KI.dcm", "RG1_8BIT_JPBASE.dcm"]


def area_weights(src: int, dst: int) -> np.ndarray:
    """[dst, src] matrix averaging the source pixels each output pixel covers."""
    scale = src / dst
    w = np.zeros((dst, src), np.float32)
    for i in range(dst):
        a, b = i * scale, (i + 1) * scale
        for j in range(int(a), min(int(np.ceil(b)), src)):
            w[i, j] = min(b, j + 1) - max(a, j)
        w[i] /= w[i].sum()
    return w


def letterbox(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    scale = SIZE / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = area_weights(h, nh) @ img @ area_weights(w, nw).T
    out = np.zeros((SIZE, SIZE), np.float32)
    y, x = (SIZE - nh) // 2, (SIZE - nw) // 2
    out[y:y + nh, x:x + nw] = small
    return out


def python_pipeline(files: list[Path], session: ort.InferenceSession) -> float:
    """Images/s of the Python pipeline over the files."""
    t0 = time.perf_counter()
    for f in files:
        _, _, _, img = decode(f)
        x = letterbox(img) * 2.0 - 1.0
        scores, _ = session.run(None, {"image": x[None, None].astype(np.float32)})
        1.0 / (1.0 + np.exp(-scores))
    return len(files) / (time.perf_counter() - t0)


def ours(binary: str, folder: Path, n: int) -> float:
    env = dict(os.environ, RAYON_NUM_THREADS="1", CXR_LOG="error")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([binary, "bench", "--images", str(folder), "--batch", "1", "--concurrency", "1",
                        "--threads", "1", "--requests", str(n), "--provider", "cpu",
                        "--models", str(ROOT / "models"), "--json", out.name],
                       check=True, env=env, capture_output=True)
        report = json.load(open(out.name))
    return report["pipeline"][0]["images_per_s"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "cxr-triage"))
    ap.add_argument("--json-out")
    args = ap.parse_args()
    files = [Path(f) for f in args.files] or [ROOT / "test-images" / "generated" / f for f in DEFAULT_FILES]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL), opts, providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            shutil.copy(f, Path(tmp) / f.name)
        python_pipeline(files[:1], session)  # warm-up
        py, rs = [], []
        for _ in range(args.repeat):
            py.append(python_pipeline(files, session))
            rs.append(ours(args.binary, Path(tmp), len(files) * 2))
    p, r = statistics.median(py), statistics.median(rs)
    print(f"{len(files)} files, {args.repeat} rounds, 1 thread each side, CPU, {date.today()}, "
          f"{platform.machine()} {os.cpu_count()} cores")
    print(f"{'pipeline':<10} {'images/s':>9}")
    print(f"{'python':<10} {p:>9.2f}")
    print(f"{'ours':<10} {r:>9.2f}")
    print(f"ours / python: {r / p:.2f}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"python_images_per_s": py, "ours_images_per_s": rs,
                                                   "ratio": r / p, "files": [f.name for f in files]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
