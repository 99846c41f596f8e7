#!/usr/bin/env bash
# Seed corpus for the `ingest` fuzz target: 64x48 crops of the RG1 chest CR
# (from test-images/generated, made by `make fixtures`) in every transfer
# syntax dcmtk writes. Small seeds keep each fuzz execution fast.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-../.venv/bin/python}
SRC=../test-images/generated
OUT=corpus/ingest
mkdir -p "$OUT"
"$PY" - "$SRC" "$OUT" <<'PYEOF'
import sys
import pydicom
from pydicom.uid import generate_uid
src, out = sys.argv[1], sys.argv[2]
for name, tag in [("RG1_UNCR.dcm", "crop16"), ("RG1_12BIT.dcm", "crop12"), ("RG1_8BIT.dcm", "crop8")]:
    ds = pydicom.dcmread(f"{src}/{name}")
    arr = ds.pixel_array[900:948, 900:964].copy()
    ds.Rows, ds.Columns = arr.shape
    ds.PixelData = arr.tobytes()
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[tag])
    ds.save_as(f"{out}/{tag}.dcm", enforce_file_format=True)
PYEOF
for base in crop16 crop12 crop8; do
  in=$OUT/$base.dcm
  dcmconv +ti "$in" "$OUT/${base}_implicit.dcm"
  dcmconv +tb "$in" "$OUT/${base}_be.dcm"
  dcmconv +td "$in" "$OUT/${base}_deflated.dcm"
  dcmcrle "$in" "$OUT/${base}_rle.dcm"
  dcmcjpeg +e1 "$in" "$OUT/${base}_jpll.dcm"
  dcmcjpls +el "$in" "$OUT/${base}_jlsl.dcm"
  dcmcjpls +en +md 2 "$in" "$OUT/${base}_jlsn.dcm"
done
dcmcjpeg +ee +sr "$OUT/crop12.dcm" "$OUT/crop12_jpext.dcm"
dcmcjpeg +eb +sr "$OUT/crop8.dcm" "$OUT/crop8_jpbase.dcm"
ls "$OUT" | wc -l | xargs echo "seeds:"
