#!/usr/bin/env python3
"""Baseline: the decode + display pipeline a user would write with pydicom.

Usage:
    python benches/baseline/pydicom_decode.py [FILE.dcm ...] [-n N] [--warmup W]

With no FILE, every *.dcm in test-images/generated (sorted) is timed.  For
each file: W warm-up runs (default 1), then N timed runs (default 5) of

    read    ds = pydicom.dcmread(path)                 (file -> Dataset)
    decode  arr = ds.pixel_array                       (pylibjpeg / openjpeg /
                                                        libjpeg / rle plugins
                                                        as installed)
    lut     out = apply_modality_lut(arr, ds)          (Rescale Slope/Intercept
                                                        or Modality LUT)
            out = apply_voi_lut(out, ds)               (first VOI LUT or window)
            out = (out - y_min) / (y_max - y_min)      -> [0, 1], float32
            out = 1 - out   if MONOCHROME1

All frames of a multi-frame file are processed.  y_min / y_max are the output
range pydicom's windowing maps to (PS3.3 C.11.2.1.2: 0 .. 2**BitsStored - 1,
signed range when Pixel Representation is 1, passed through Rescale
Slope/Intercept; or the Modality LUT's range).  When the file has no window
and no VOI LUT, apply_voi_lut returns its input and the modality output is
scaled by its own min/max instead, as a viewer would.

Threads: OMP / OpenBLAS / MKL / numexpr / OpenJPEG thread counts are set to 1
before numpy is imported, so the numbers are single-threaded.

Output: one JSON object per line on stdout, per file:

    {"file": "RG1_JLSL.dcm",                  # base name
     "transfer_syntax": "1.2.840.10008.1.2.4.80",
     "rows": 1955, "columns": 1841, "frames": 1,
     "repeat": 5,                             # timed runs
     "median_ms": 123.4, "min_ms": 120.1,     # whole pipeline, per run
     "read_ms": 3.1, "decode_ms": 100.2,      # medians of each stage
     "lut_ms": 20.0}

Times are wall-clock (time.perf_counter) in milliseconds, rounded to 0.001.
A file that fails prints {"file": ..., "error": "..."} instead and the script
goes on (exit status 1 at the end).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "OPJ_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_voi_lut  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "test-images" / "generated"


def output_range(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """The range pydicom's VOI windowing maps to, or None without a VOI."""
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    has_voi_lut = "VOILUTSequence" in ds
    if not (has_window or has_voi_lut):
        return None
    if has_voi_lut:
        # LUT output is 0 .. 2**LUTDescriptor[2] - 1
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if "ModalityLUTSequence" in ds:
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    bs = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 0:
        lo, hi = 0.0, float(2**bs - 1)
    else:
        lo, hi = float(-(2 ** (bs - 1))), float(2 ** (bs - 1) - 1)
    slope, icpt = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and icpt is not None:
        lo, hi = lo * float(slope) + float(icpt), hi * float(slope) + float(icpt)
    return lo, hi


def pipeline(path: Path) -> tuple[float, float, float, np.ndarray]:
    t0 = time.perf_counter()
    ds = pydicom.dcmread(path)
    t1 = time.perf_counter()
    arr = ds.pixel_array
    t2 = time.perf_counter()
    out = apply_modality_lut(arr, ds)
    rng = output_range(ds)
    out = apply_voi_lut(out, ds)
    if rng is None:
        lo, hi = float(out.min()), float(out.max())
    else:
        lo, hi = rng
    img = ((out - lo) * (1.0 / max(hi - lo, 1e-12))).astype(np.float32)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        np.subtract(np.float32(1.0), img, out=img)
    t3 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, img


def bench(path: Path, repeat: int, warmup: int) -> dict:
    for _ in range(warmup):
        pipeline(path)
    reads, decodes, luts, totals = [], [], [], []
    img = None
    for _ in range(repeat):
        r, d, lut, img = pipeline(path)
        reads.append(r)
        decodes.append(d)
        luts.append(lut)
        totals.append(r + d + lut)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {
        "file": path.name,
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "frames": int(ds.get("NumberOfFrames", 1) or 1),
        "repeat": repeat,
        "median_ms": round(statistics.median(totals), 3),
        "min_ms": round(min(totals), 3),
        "read_ms": round(statistics.median(reads), 3),
        "decode_ms": round(statistics.median(decodes), 3),
        "lut_ms": round(statistics.median(luts), 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("-n", "--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    args = ap.parse_args()
    files = args.files or sorted(DEFAULT_DIR.glob("*.dcm"))
    if not files:
        print(f"pydicom_decode: no files given and none in {DEFAULT_DIR}",
              file=sys.stderr)
        return 1
    status = 0
    for f in files:
        try:
            rec = bench(f, max(args.repeat, 1), max(args.warmup, 0))
        except Exception as exc:  # report and go on
            rec = {"file": f.name, "error": f"{type(exc).__name__}: {exc}"}
            status = 1
        print(json.dumps(rec), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
