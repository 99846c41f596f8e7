#!/usr/bin/env python3
"""Write the pydicom reference for the fixtures: one JSON object per DICOM file.

Usage:  python test-images/reference.py [DIR] [--out FILE]

DIR defaults to test-images/generated and FILE to DIR/reference.jsonl.  Every
*.dcm in DIR (sorted by name) gets one line, also sorted by name:

  file                 file name, e.g. "RG1_JPLL_SV1.dcm"
  transfer_syntax      Transfer Syntax UID from the file meta information
  transfer_syntax_name its name as pydicom spells it
  rows, columns, bits_allocated, bits_stored, high_bit, pixel_representation,
  samples_per_pixel    integers from the Image Pixel module
  photometric          Photometric Interpretation, e.g. "MONOCHROME1"
  number_of_frames     Number of Frames (1 when absent)
  pixel_sha256         SHA-256 (hex) of frame 1's stored pixel values, each
                       widened to 16-bit little endian (u16 when Pixel
                       Representation is 0, i16 when 1; an 8-bit value is
                       zero- or sign-extended to 16 bits), row-major, no LUT
  frame_sha256         the same digest for every frame, in order
  min, max             smallest / largest stored value in frame 1
  samples              [[row, col, value], ...] stored values of frame 1 at a
                       5x5 grid of rows/columns at 0, 1/4, 1/2, 3/4 and the
                       last index (25 points: corners, edge midpoints, centre)
  window_center, window_width, rescale_slope, rescale_intercept,
  pixel_padding_value  first value of each (numbers) or null when absent
  lossy_image_compression  "00", "01" or null
  derived_from         the file whose stored values this file's were computed
                       from by a documented transform (see README), or null
  lossless_of          the file whose stored values this file must reproduce
                       exactly, every frame, or null
  lossy_of             the file this one is a lossy encoding of, or null
  max_abs_error,       only when lossy_of is set: max |decoded - original| and
  rms_error            sqrt(mean((decoded - original)^2)) over all frames, as
                       pydicom (+ pylibjpeg plugins) decodes both

"Stored values" are the Bits Stored-wide integers as PS3.5 8.1.1 defines them:
pydicom 3 masks the bits above High Bit of unsigned data and sign-extends
signed data from bit Bits Stored - 1 (its `correct_unused_bits` option for
native, RLE and JPEG data and its J2K / JPEG-LS sign correction), and applies
no Modality LUT, VOI LUT or MONOCHROME1 inversion.  RG1_SIGNED*.dcm leave the
bit above High Bit zero on purpose, so a reader must sign-extend itself.

The script fails (exit 1) if a file named in lossless_of does not reproduce
exactly, so running it also verifies the lossless transcodes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.multival import MultiValue

HERE = Path(__file__).resolve().parent

# name stem -> (relation, original stem); relation is one of
# "lossless", "lossy" or "derived".  Files not listed get nulls.
RELATIONS: dict[str, tuple[str, str]] = {
    # pydicom-data originals: UNCR is the original image; J2KR is its
    # reversible JPEG 2000 encoding; J2KI the irreversible (10:1) one, and
    # UNCI is J2KI decompressed (bit-identical to OpenJPEG's decode of J2KI).
    "RG1_J2KR": ("lossless", "RG1_UNCR"),
    "RG1_J2KI": ("lossy", "RG1_UNCR"),
    "RG1_UNCI": ("lossy", "RG1_UNCR"),
    # dcmtk / OpenJPH transcodes of RG1_UNCR
    "RG1_IMPLICIT": ("lossless", "RG1_UNCR"),
    "RG1_BE": ("lossless", "RG1_UNCR"),
    "RG1_DEFL": ("lossless", "RG1_UNCR"),
    "RG1_RLE": ("lossless", "RG1_UNCR"),
    "RG1_JPLL_SV1": ("lossless", "RG1_UNCR"),
    **{f"RG1_JPLL_P14_SV{sv}": ("lossless", "RG1_UNCR") for sv in range(1, 8)},
    "RG1_JLSL": ("lossless", "RG1_UNCR"),
    "RG1_JLSN": ("lossy", "RG1_UNCR"),
    "RG1_HTJ2KL": ("lossless", "RG1_UNCR"),
    "RG1_HTJ2K": ("lossy", "RG1_UNCR"),
    # pydicom derivatives of RG1_UNCR (see fixtures.py / README)
    "RG1_12BIT": ("derived", "RG1_UNCR"),
    "RG1_8BIT": ("derived", "RG1_UNCR"),
    "RG1_MONO2": ("derived", "RG1_UNCR"),
    "RG1_MF2": ("derived", "RG1_UNCR"),
    "RG1_PAD": ("derived", "RG1_UNCR"),
    "RG1_SIGNED": ("derived", "RG1_UNCR"),
    # codecs on the derivatives
    "RG1_12BIT_JPEXT": ("lossy", "RG1_12BIT"),
    "RG1_12BIT_JPLL_SV1": ("lossless", "RG1_12BIT"),
    "RG1_12BIT_JLSL": ("lossless", "RG1_12BIT"),
    "RG1_8BIT_JPBASE": ("lossy", "RG1_8BIT"),
    "RG1_8BIT_JPLL_SV1": ("lossless", "RG1_8BIT"),
    "RG1_8BIT_JLSL": ("lossless", "RG1_8BIT"),
    "RG1_8BIT_RLE": ("lossless", "RG1_8BIT"),
    "RG1_MF2_RLE": ("lossless", "RG1_MF2"),
    "RG1_MF2_JPLL_SV1": ("lossless", "RG1_MF2"),
    "RG1_MF2_JLSL": ("lossless", "RG1_MF2"),
    "RG1_MF2_J2KR": ("lossless", "RG1_MF2"),
    "RG1_SIGNED_RLE": ("lossless", "RG1_SIGNED"),
}


def widened(frame: np.ndarray, signed: bool) -> bytes:
    """Frame's stored values as 16-bit little endian, row-major."""
    return np.ascontiguousarray(frame, dtype="<i2" if signed else "<u2").tobytes()


def first(ds: pydicom.Dataset, keyword: str):
    """First value of a (possibly multi-valued) numeric element, or None."""
    if keyword not in ds or ds[keyword].VM == 0:
        return None
    v = ds[keyword].value
    if isinstance(v, (list, tuple, MultiValue)):
        v = v[0]
    f = float(v)
    return int(f) if f.is_integer() else f


def frames_of(ds: pydicom.Dataset) -> tuple[int, np.ndarray]:
    """(number_of_frames, array shaped (frames, rows, columns[, samples]))."""
    n = int(ds.get("NumberOfFrames", 1) or 1)
    arr = ds.pixel_array
    if n == 1:
        arr = arr[np.newaxis, ...]
    return n, arr


def grid(n: int) -> list[int]:
    last = n - 1
    return sorted({0, last // 4, last // 2, (3 * last) // 4, last})


def describe(path: Path, cache: dict[str, np.ndarray]) -> dict:
    ds = pydicom.dcmread(path)
    n, arr = frames_of(ds)
    stem = path.stem
    cache[stem] = arr
    signed = int(ds.PixelRepresentation) == 1
    f1 = arr[0]
    samples = [[r, c, int(f1[r, c]) if f1.ndim == 2 else [int(x) for x in f1[r, c]]]
               for r in grid(int(ds.Rows)) for c in grid(int(ds.Columns))]
    rec = {
        "file": path.name,
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "transfer_syntax_name": ds.file_meta.TransferSyntaxUID.name,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.BitsStored),
        "high_bit": int(ds.HighBit),
        "pixel_representation": int(ds.PixelRepresentation),
        "samples_per_pixel": int(ds.SamplesPerPixel),
        "photometric": str(ds.PhotometricInterpretation),
        "number_of_frames": n,
        "pixel_sha256": hashlib.sha256(widened(f1, signed)).hexdigest(),
        "frame_sha256": [hashlib.sha256(widened(f, signed)).hexdigest() for f in arr],
        "min": int(f1.min()),
        "max": int(f1.max()),
        "samples": samples,
        "window_center": first(ds, "WindowCenter"),
        "window_width": first(ds, "WindowWidth"),
        "rescale_slope": first(ds, "RescaleSlope"),
        "rescale_intercept": first(ds, "RescaleIntercept"),
        "pixel_padding_value": first(ds, "PixelPaddingValue"),
        "lossy_image_compression": ds.get("LossyImageCompression", None),
        "derived_from": None,
        "lossless_of": None,
        "lossy_of": None,
    }
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", type=Path, default=HERE / "generated")
    ap.add_argument("--out", type=Path, default=None,
                    help="output file (default DIR/reference.jsonl)")
    args = ap.parse_args()
    out = args.out or args.dir / "reference.jsonl"

    files = sorted(args.dir.glob("*.dcm"))
    if not files:
        print(f"reference: no *.dcm in {args.dir}", file=sys.stderr)
        return 1

    cache: dict[str, np.ndarray] = {}
    records = {}
    for p in files:
        records[p.stem] = describe(p, cache)

    failures = []
    for stem, rec in records.items():
        rel = RELATIONS.get(stem)
        if rel is None:
            continue
        kind, orig = rel
        if orig not in cache:
            failures.append(f"{stem}: its original {orig}.dcm is missing")
            continue
        a, b = cache[stem], cache[orig]
        if kind == "derived":
            rec["derived_from"] = orig + ".dcm"
            continue
        if a.shape != b.shape:
            failures.append(f"{stem}: shape {a.shape} != {orig} {b.shape}")
            continue
        d = a.astype(np.float64) - b.astype(np.float64)
        if kind == "lossless":
            rec["lossless_of"] = orig + ".dcm"
            if np.any(d):
                failures.append(f"{stem}: not identical to {orig} "
                                f"(max |diff| {np.abs(d).max():g})")
        else:
            rec["lossy_of"] = orig + ".dcm"
            rec["max_abs_error"] = int(np.abs(d).max())
            rec["rms_error"] = round(float(np.sqrt(np.mean(d * d))), 4)

    with open(out, "w", encoding="utf-8") as fh:
        for stem in sorted(records):
            fh.write(json.dumps(records[stem], separators=(",", ":")) + "\n")
    print(f"reference: wrote {len(records)} records to {out}")
    for stem in sorted(records):
        r = records[stem]
        if r.get("lossy_of"):
            print(f"  {r['file']:<24} lossy of {r['lossy_of']:<16} "
                  f"max |err| {r['max_abs_error']:>4}  rms {r['rms_error']:.4f}")
    if failures:
        for f in failures:
            print(f"reference: FAIL {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
