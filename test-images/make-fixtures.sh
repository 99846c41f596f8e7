#!/usr/bin/env bash
# Build the real-radiograph DICOM fixtures in test-images/generated/.
#
# Source: the NEMA WG04 chest CR "RG1" (1955x1841, MONOCHROME1, 15 bits stored)
# as shipped in the pydicom-data wheel; everything else is transcoded from it
# with dcmtk (and openjph-tools for HTJ2K, when installed) or derived with
# pydicom (test-images/fixtures.py).  See test-images/README.md.
#
# Usage:  [PYTHON=.venv/bin/python] [FIXTURE_DIR=test-images/generated] \
#         bash test-images/make-fixtures.sh [--force]
#
# Idempotent: a target is rebuilt only when it is missing or older than its
# input, this script or fixtures.py; with everything present the script only
# stats files.  Every newly built file is checked (transfer syntax via dcmdump,
# decode via pydicom) before the script exits 0.  --force rebuilds everything.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"

# Resolve $PYTHON against the caller's directory first, then the repo root.
PY="${PYTHON:-.venv/bin/python}"
if [[ "$PY" == */* && "$PY" != /* ]]; then
    if [[ -x "$PWD/$PY" ]]; then PY="$PWD/$PY"; else PY="$ROOT/$PY"; fi
fi
command -v "$PY" >/dev/null 2>&1 || {
    echo "make-fixtures: Python interpreter '$PY' not found (set PYTHON=...)" >&2
    exit 1
}

OUT="${FIXTURE_DIR:-$HERE/generated}"
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

for tool in dcmconv dcmcrle dcmcjpeg dcmcjpls dcmdump dcmodify; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "make-fixtures: $tool not found (apt-get install dcmtk)" >&2
        exit 1
    }
done
HAVE_OJPH=0
command -v ojph_compress >/dev/null 2>&1 && HAVE_OJPH=1

mkdir -p "$OUT"
FX="$HERE/fixtures.py"
SELF="$HERE/make-fixtures.sh"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/cxr-fixtures.XXXXXX")"
trap 'rm -rf "$TMP"; rm -f "$OUT"/.*.tmp' EXIT

# Transfer syntax UIDs.
TS_IMPLICIT=1.2.840.10008.1.2
TS_EXPLICIT=1.2.840.10008.1.2.1
TS_DEFLATED=1.2.840.10008.1.2.1.99
TS_BIG=1.2.840.10008.1.2.2
TS_JPEG_BASELINE=1.2.840.10008.1.2.4.50
TS_JPEG_EXTENDED=1.2.840.10008.1.2.4.51
TS_JPEG_LOSSLESS_P14=1.2.840.10008.1.2.4.57
TS_JPEG_LOSSLESS_SV1=1.2.840.10008.1.2.4.70
TS_JPEGLS_LOSSLESS=1.2.840.10008.1.2.4.80
TS_JPEGLS_NEAR=1.2.840.10008.1.2.4.81
TS_J2K_LOSSLESS=1.2.840.10008.1.2.4.90
TS_J2K=1.2.840.10008.1.2.4.91
TS_HTJ2K_LOSSLESS=1.2.840.10008.1.2.4.201
TS_HTJ2K=1.2.840.10008.1.2.4.203
TS_RLE=1.2.840.10008.1.2.5

BUILT=()     # names of the files built in this run
CHECK=()     # path, expected transfer syntax UID; pairs, checked at the end

# fresh TARGET DEP...: true when TARGET exists and is newer than every DEP.
fresh() {
    local t="$1"; shift
    [[ $FORCE -eq 0 && -e "$t" ]] || return 1
    local d
    for d in "$@"; do [[ "$d" -nt "$t" ]] && return 1; done
    return 0
}

# build NAME UID SRC CMD...: make $OUT/NAME from $OUT/SRC (or an absolute
# SRC) by running CMD with the placeholders {in} and {out} substituted.
# Output goes to a temporary name and is renamed on success.
build() {
    local name="$1" uid="$2" src="$3"; shift 3
    [[ "$src" == /* ]] || src="$OUT/$src"
    local dst="$OUT/$name"
    fresh "$dst" "$src" "$SELF" "$FX" && return 0
    local tmp="$OUT/.$name.tmp"
    local args=() a
    for a in "$@"; do
        a="${a//\{in\}/$src}"
        args+=("${a//\{out\}/$tmp}")
    done
    "${args[@]}"
    mv -f "$tmp" "$dst"
    BUILT+=("$name")
    CHECK+=("$dst" "$uid")
    echo "  built $name"
}

# lossy TAG CMD...: run CMD (a dcmtk lossy encoder, whose last argument is
# the output file), then replace the random SOP Instance UID dcmtk assigns
# with a deterministic one, so a rebuild gives byte-identical files.
lossy() {
    local tag="$1"; shift
    "$@"
    local out="${*: -1}" uid
    uid="$("$PY" "$FX" uid "$tag")"
    dcmodify -q -nb -m "(0008,0018)=$uid" "$out"
}

start=$SECONDS
echo "make-fixtures: output in $OUT"

# 1. The four pydicom-data originals (copied unchanged).
located="$("$PY" "$FX" locate RG1_UNCR.dcm RG1_UNCI.dcm RG1_J2KR.dcm RG1_J2KI.dcm)"
mapfile -t SRCS <<<"$located"
build RG1_UNCR.dcm "$TS_EXPLICIT" "${SRCS[0]}" cp -f {in} {out}
build RG1_UNCI.dcm "$TS_EXPLICIT" "${SRCS[1]}" cp -f {in} {out}
build RG1_J2KR.dcm "$TS_J2K_LOSSLESS" "${SRCS[2]}" cp -f {in} {out}
build RG1_J2KI.dcm "$TS_J2K" "${SRCS[3]}" cp -f {in} {out}

# 2. Lossless transcodes of the original (RG1_UNCR, 15 bits stored).
S=RG1_UNCR.dcm
build RG1_IMPLICIT.dcm "$TS_IMPLICIT" $S dcmconv -q +ti {in} {out}
build RG1_BE.dcm "$TS_BIG" $S dcmconv -q +tb {in} {out}
build RG1_DEFL.dcm "$TS_DEFLATED" $S dcmconv -q +td {in} {out}
build RG1_RLE.dcm "$TS_RLE" $S dcmcrle -q {in} {out}
build RG1_JPLL_SV1.dcm "$TS_JPEG_LOSSLESS_SV1" $S dcmcjpeg -q +e1 {in} {out}
for sv in 2 3 4 5 6 7; do
    build "RG1_JPLL_P14_SV$sv.dcm" "$TS_JPEG_LOSSLESS_P14" $S \
        dcmcjpeg -q +el +sv "$sv" {in} {out}
done
build RG1_JLSL.dcm "$TS_JPEGLS_LOSSLESS" $S dcmcjpls -q +el {in} {out}
# Near-lossless JPEG-LS, NEAR=2 (a new SOP Instance UID, as for every lossy
# file; see lossy()).
build RG1_JLSN.dcm "$TS_JPEGLS_NEAR" $S lossy RG1_JLSN dcmcjpls -q +en +md 2 {in} {out}

# 3. HTJ2K with OpenJPH's ojph_compress (Debian package openjph-tools), the
#    codestream wrapped into DICOM by fixtures.py.  Skipped when not installed.
if [[ $HAVE_OJPH -eq 1 ]]; then
    if ! fresh "$OUT/RG1_HTJ2KL.dcm" "$OUT/$S" "$SELF" "$FX" ||
       ! fresh "$OUT/RG1_HTJ2K.dcm" "$OUT/$S" "$SELF" "$FX"; then
        "$PY" "$FX" pgm "$OUT/$S" "$TMP/rg1.pgm"
        ojph_compress -i "$TMP/rg1.pgm" -o "$TMP/rg1_rev.j2c" -reversible true >/dev/null
        ojph_compress -i "$TMP/rg1.pgm" -o "$TMP/rg1_irr.j2c" -qstep 0.001 >/dev/null
    fi
    build RG1_HTJ2KL.dcm "$TS_HTJ2K_LOSSLESS" $S \
        "$PY" "$FX" htj2k {in} "$TMP/rg1_rev.j2c" {out} "$TS_HTJ2K_LOSSLESS"
    build RG1_HTJ2K.dcm "$TS_HTJ2K" $S \
        "$PY" "$FX" htj2k {in} "$TMP/rg1_irr.j2c" {out} "$TS_HTJ2K"
else
    echo "make-fixtures: ojph_compress not found (apt-get install openjph-tools);" \
         "skipping RG1_HTJ2KL.dcm and RG1_HTJ2K.dcm" >&2
fi

# 4. pydicom-derived uncompressed variants (12-bit, 8-bit, MONOCHROME2,
#    2-frame, pixel padding, signed), all Explicit VR Little Endian.
DERIVED=(RG1_12BIT.dcm RG1_8BIT.dcm RG1_MONO2.dcm RG1_MF2.dcm RG1_PAD.dcm RG1_SIGNED.dcm)
need_derive=0
for d in "${DERIVED[@]}"; do
    fresh "$OUT/$d" "$OUT/$S" "$SELF" "$FX" || need_derive=1
done
if [[ $need_derive -eq 1 ]]; then
    "$PY" "$FX" derive "$OUT/$S" "$TMP" >/dev/null
    for d in "${DERIVED[@]}"; do
        mv -f "$TMP/$d" "$OUT/$d"
        BUILT+=("$d")
        CHECK+=("$OUT/$d" "$TS_EXPLICIT")
        echo "  built $d"
    done
fi

# 5. Codecs on the derivatives.
#    Lossy JPEG: +sr maps the full stored range to the JPEG sample range, i.e.
#    the identity (dcmcjpeg's default +sp would rescale min..max and change
#    the stored values); quality 90 (dcmtk default); new SOP Instance UID.
build RG1_12BIT_JPEXT.dcm "$TS_JPEG_EXTENDED" RG1_12BIT.dcm \
    lossy RG1_12BIT_JPEXT dcmcjpeg -q +ee +sr {in} {out}
build RG1_12BIT_JPLL_SV1.dcm "$TS_JPEG_LOSSLESS_SV1" RG1_12BIT.dcm dcmcjpeg -q +e1 {in} {out}
build RG1_12BIT_JLSL.dcm "$TS_JPEGLS_LOSSLESS" RG1_12BIT.dcm dcmcjpls -q +el {in} {out}
build RG1_8BIT_JPBASE.dcm "$TS_JPEG_BASELINE" RG1_8BIT.dcm \
    lossy RG1_8BIT_JPBASE dcmcjpeg -q +eb +sr {in} {out}
build RG1_8BIT_JPLL_SV1.dcm "$TS_JPEG_LOSSLESS_SV1" RG1_8BIT.dcm dcmcjpeg -q +e1 {in} {out}
build RG1_8BIT_JLSL.dcm "$TS_JPEGLS_LOSSLESS" RG1_8BIT.dcm dcmcjpls -q +el {in} {out}
build RG1_8BIT_RLE.dcm "$TS_RLE" RG1_8BIT.dcm dcmcrle -q {in} {out}
#    Multi-frame: one fragment per frame, Basic Offset Table filled in.
build RG1_MF2_RLE.dcm "$TS_RLE" RG1_MF2.dcm dcmcrle -q {in} {out}
build RG1_MF2_JPLL_SV1.dcm "$TS_JPEG_LOSSLESS_SV1" RG1_MF2.dcm dcmcjpeg -q +e1 {in} {out}
build RG1_MF2_JLSL.dcm "$TS_JPEGLS_LOSSLESS" RG1_MF2.dcm dcmcjpls -q +el {in} {out}
build RG1_MF2_J2KR.dcm "$TS_J2K_LOSSLESS" RG1_MF2.dcm "$PY" "$FX" j2k {in} {out}
#    Signed through a byte-wise codec (bit 15 stays as written: not extended).
build RG1_SIGNED_RLE.dcm "$TS_RLE" RG1_SIGNED.dcm dcmcrle -q {in} {out}

# 6. Check what was built: transfer syntax as dcmdump reads it, then a full
#    pydicom decode with the expected shape.  On failure every file built in
#    this run is removed, so the next run rebuilds it rather than trusting it.
discard() {
    for ((i = 0; i < ${#CHECK[@]}; i += 2)); do rm -f "${CHECK[i]}"; done
    exit 1
}
if [[ ${#CHECK[@]} -gt 0 ]]; then
    for ((i = 0; i < ${#CHECK[@]}; i += 2)); do
        f="${CHECK[i]}" uid="${CHECK[i+1]}"
        got="$(dcmdump -q -M -s -Un +P 0002,0010 "$f" | sed -n 's/^(0002,0010) UI \[\([0-9.]*\)\].*/\1/p')"
        if [[ "$got" != "$uid" ]]; then
            echo "make-fixtures: $(basename "$f"): dcmdump says transfer syntax '$got', expected $uid" >&2
            discard
        fi
    done
    "$PY" "$FX" check "${CHECK[@]}" || discard
    echo "make-fixtures: built and checked ${#BUILT[@]} file(s) in $((SECONDS - start)) s"
else
    echo "make-fixtures: all fixtures up to date"
fi
