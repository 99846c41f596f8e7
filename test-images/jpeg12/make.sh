#!/usr/bin/env bash
# Regenerate the JPEG fixtures of src/dicom/jpeg12.rs (see README.md here).
#
# Usage:  [PYTHON=/path/to/python] bash test-images/jpeg12/make.sh
# Needs dcmtk (dcmcjpeg, dcmdjpeg) and a Python with pydicom >= 3 and numpy.
# The output is deterministic: rerunning it should leave git clean.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-python3}"

for tool in dcmcjpeg dcmdjpeg; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "jpeg12/make.sh: $tool not found (apt-get install dcmtk)" >&2
        exit 1
    }
done
"$PY" -c 'import pydicom, numpy' 2>/dev/null || {
    echo "jpeg12/make.sh: '$PY' lacks pydicom/numpy (set PYTHON=...)" >&2
    exit 1
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/jpeg12-fixtures.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

rm -f "$HERE"/*.jpg "$HERE"/*.pgm "$HERE"/*.ppm
"$PY" "$HERE/make_fixtures.py" "$HERE" "$WORK"
echo "jpeg12/make.sh: total $(du -cb "$HERE"/*.jpg "$HERE"/*.p?m | tail -1 | cut -f1) bytes of fixtures"
