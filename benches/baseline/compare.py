#!/usr/bin/env python3
"""Side by side: cxr-triage vs the pydicom pipeline, same files, same run.

Usage:
    python benches/baseline/compare.py [FILE.dcm ...] [--repeat N]
        [--binary target/release/cxr-triage] [--python .venv/bin/python]
        [--json-out results.json]

Both sides do the same work per file, single-threaded, page cache warm:
read the file from disk, decode frame 1, apply the modality LUT and the VOI
transformation, invert MONOCHROME1, to a display image.

- ours:    `cxr-triage inspect --json FILE...` with RAYON_NUM_THREADS=1; the
           per-file `decode_ms` it reports times read_file (read + parse +
           decode + modality LUT + VOI + inversion). Process start-up and the
           pixel hash are outside that time.
- pydicom: benches/baseline/pydicom_decode.py (pydicom.dcmread + pixel_array
           with the pylibjpeg plugins + apply_modality_lut + apply_voi_lut +
           inversion to float32), OMP/OpenBLAS/OpenJPEG threads = 1; its
           per-run `median_ms` covers the same stages.

The two are run alternately, N rounds, so machine noise hits both alike; the
table shows per-file medians over the rounds and the ratio pydicom / ours
(how many times faster ours is), with the geometric mean over files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "test-images" / "generated"
# The same set as benches/decode.rs: one file per transfer syntax.
DEFAULT_FILES = [
    "RG1_UNCR.dcm", "RG1_IMPLICIT.dcm", "RG1_BE.dcm", "RG1_DEFL.dcm",
    "RG1_RLE.dcm", "RG1_JPLL_SV1.dcm", "RG1_JLSL.dcm", "RG1_JLSN.dcm",
    "RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG1_HTJ2KL.dcm", "RG1_12BIT_JPEXT.dcm",
    "RG1_8BIT_JPBASE.dcm",
]


def run_ours(binary: str, files: list[Path]) -> dict[str, float]:
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    out = subprocess.run([binary, "inspect", "--json", *map(str, files)],
                         capture_output=True, text=True, env=env, check=True)
    result = {}
    for line in out.stdout.splitlines():
        record = json.loads(line)
        result[Path(record["file"]).name] = record["decode_ms"]
    return result


def run_pydicom(python: str, files: list[Path]) -> dict[str, float]:
    script = ROOT / "benches" / "baseline" / "pydicom_decode.py"
    out = subprocess.run([python, str(script), *map(str, files), "-n", "1", "--warmup", "1"],
                         capture_output=True, text=True, check=True)
    result = {}
    for line in out.stdout.splitlines():
        record = json.loads(line)
        result[record["file"]] = record["median_ms"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="DICOM files (default: one per transfer syntax)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of both sides (default 5)")
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "cxr-triage"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--json-out", help="also write the results as JSON here")
    args = parser.parse_args()

    files = [Path(f) for f in args.files] or [GENERATED / f for f in DEFAULT_FILES]
    files = [f for f in files if f.exists()] or sys.exit("no input files (run `make fixtures`)")
    ours: dict[str, list[float]] = {f.name: [] for f in files}
    theirs: dict[str, list[float]] = {f.name: [] for f in files}
    run_ours(args.binary, files)  # warm the page cache and the binary
    for _ in range(args.repeat):
        for name, ms in run_ours(args.binary, files).items():
            ours[name].append(ms)
        for name, ms in run_pydicom(args.python, files).items():
            theirs[name].append(ms)

    rows = []
    for f in files:
        a, b = statistics.median(ours[f.name]), statistics.median(theirs[f.name])
        rows.append({"file": f.name, "ours_ms": round(a, 2), "pydicom_ms": round(b, 2),
                     "ratio": round(b / a, 2)})
    geomean = math.exp(sum(math.log(r["ratio"]) for r in rows) / len(rows))

    print(f"{'file':<22} {'ours ms':>9} {'pydicom ms':>11} {'pydicom/ours':>13}")
    for r in rows:
        print(f"{r['file']:<22} {r['ours_ms']:>9.1f} {r['pydicom_ms']:>11.1f} {r['ratio']:>12.2f}x")
    print(f"{'geometric mean':<22} {'':>9} {'':>11} {geomean:>12.2f}x")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}"
    print(f"({args.repeat} rounds, single-threaded, {machine}, {date.today()})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"date": str(date.today()), "machine": machine, "repeat": args.repeat,
             "rows": rows, "geomean_ratio": round(geomean, 3)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
