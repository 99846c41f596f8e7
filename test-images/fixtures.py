#!/usr/bin/env python3
"""Helper for make-fixtures.sh: the steps that need pydicom rather than dcmtk.

Subcommands (all paths are explicit; nothing is downloaded):

  locate NAME...            print the absolute path of each pydicom-data file
                            (checked against pydicom's data/hashes.json)
  derive SRC OUTDIR         write the pydicom-derived uncompressed variants of
                            RG1_UNCR (12-bit, 8-bit, MONOCHROME2, multi-frame,
                            pixel padding, signed) into OUTDIR
  j2k SRC DST               re-encode SRC as JPEG 2000 Lossless with pydicom +
                            pylibjpeg-openjpeg (used for the multi-frame file)
  pgm SRC DST               dump frame 1 of SRC as a binary PGM (16-bit,
                            maxval = 2**BitsStored - 1), the input of ojph_compress
  htj2k SRC J2C DST UID     wrap the HTJ2K codestream J2C into a copy of SRC
                            with transfer syntax UID (…4.201 or …4.203)
  uid TAG                   print the deterministic SOP Instance UID for TAG
  check FILE UID [FILE UID ...]
                            assert each FILE has transfer syntax UID and that
                            pydicom decodes it to the shape its header gives

Every derived file gets a deterministic SOP Instance UID (generate_uid with a
fixed entropy source) so regenerating gives byte-identical output.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    HTJ2K,
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEG2000Lossless,
    generate_uid,
)


def locate(names: list[str]) -> None:
    """Find files shipped in the pydicom-data wheel (package `data_store`)."""
    dist = importlib.metadata.distribution("pydicom-data")
    hashes_file = Path(pydicom.__file__).parent / "data" / "hashes.json"
    hashes = json.loads(hashes_file.read_text()) if hashes_file.is_file() else {}
    for name in names:
        p = Path(dist.locate_file(f"data_store/data/{name}")).resolve()
        if not p.is_file():
            # Fall back to the package's own lookup (never downloads: the
            # wheel ships every file).
            import data_store  # type: ignore[import-not-found]

            p = Path(data_store.__file__).parent / "data" / name
        if not p.is_file():
            sys.exit(f"pydicom-data file not found: {name}")
        # pydicom ships the SHA-256 of every external data file.
        want = hashes.get(name)
        if want is not None:
            got = hashlib.sha256(p.read_bytes()).hexdigest()
            if got != want:
                sys.exit(f"{p}: SHA-256 {got} does not match pydicom's {want}")
        print(p)


def _fmt_ds(v: float) -> str:
    """Format a number for a DS element (at most 16 characters)."""
    s = f"{v:.6f}".rstrip("0").rstrip(".")
    return s[:16]


def fixture_uid(tag: str) -> str:
    return generate_uid(entropy_srcs=["cxr-triage test fixture", tag])


def _new_instance(ds: Dataset, tag: str, description: str) -> None:
    uid = fixture_uid(tag)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = description[:1024]
    ds.ImageComments = f"cxr-triage fixture {tag}: {description}"[:10240]
    # The source is the original RG1 (uncompressed predecessor of J2KR).
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = "1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457"
    ds.SourceImageSequence = Sequence([ref])
    for kw in ("DerivationCodeSequence",):
        if kw in ds:
            delattr(ds, kw)


def _save(ds: Dataset, path: Path) -> None:
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationVersionName = "CXR_TRIAGE_FX"
    ds.save_as(path, enforce_file_format=True)
    print(f"  wrote {path.name}")


def _set_pixels(ds: Dataset, arr: np.ndarray, bits_alloc: int, bits_stored: int,
                signed: bool = False) -> None:
    ds.BitsAllocated = bits_alloc
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if bits_alloc == 8:
        ds.PixelData = arr.astype(np.uint8).tobytes()
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = arr.astype("<u2" if not signed else "<i2").tobytes()
        ds["PixelData"].VR = "OW"
    if len(ds.PixelData) % 2:
        ds.PixelData += b"\x00"


def derive(src: Path, outdir: Path) -> None:
    base = pydicom.dcmread(src)
    assert base.BitsStored == 15 and base.PixelRepresentation == 0
    px = base.pixel_array.astype(np.int64)  # stored values, 0..32767
    wc, ww = float(base.WindowCenter), float(base.WindowWidth)
    maxv = (1 << base.BitsStored) - 1

    def fresh() -> Dataset:
        # A new copy of the source; every attribute is kept (including the
        # original's odd Pixel Spacing 0\0) unless changed below.
        return pydicom.dcmread(src)

    # 12-bit: stored >> 3, window scaled by 1/8.
    ds = fresh()
    _new_instance(ds, "RG1_12BIT", "RG1_UNCR stored values >> 3 (12 bits stored)")
    _set_pixels(ds, px >> 3, 16, 12)
    ds.WindowCenter, ds.WindowWidth = _fmt_ds(wc / 8), _fmt_ds(ww / 8)
    _save(ds, outdir / "RG1_12BIT.dcm")

    # 8-bit: stored >> 7, BitsAllocated 8, window scaled by 1/128.
    ds = fresh()
    _new_instance(ds, "RG1_8BIT", "RG1_UNCR stored values >> 7 (8 bits allocated)")
    _set_pixels(ds, px >> 7, 8, 8)
    ds.WindowCenter, ds.WindowWidth = _fmt_ds(wc / 128), _fmt_ds(ww / 128)
    _save(ds, outdir / "RG1_8BIT.dcm")

    # MONOCHROME2: v' = (2**15 - 1) - v.  Window centre c' = max - c + 1 so that
    # the PS3.3 C.11.2.1.2 linear VOI function of the inverted image equals the
    # MONOCHROME1-inverted rendering of the original exactly.
    ds = fresh()
    _new_instance(ds, "RG1_MONO2",
                  "RG1_UNCR inverted: stored' = 32767 - stored, MONOCHROME2")
    _set_pixels(ds, maxv - px, 16, 15)
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = _fmt_ds(maxv - wc + 1), _fmt_ds(ww)
    _save(ds, outdir / "RG1_MONO2.dcm")

    # Multi-frame: frame 1 = original, frame 2 = original mirrored left-right.
    # (The CR IOD is single-frame; this file is for decoder tests only.)
    ds = fresh()
    _new_instance(ds, "RG1_MF2",
                  "2 frames: RG1_UNCR and RG1_UNCR mirrored left-right")
    _set_pixels(ds, np.stack([px, px[:, ::-1]]), 16, 15)
    ds.NumberOfFrames = 2
    ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.FrameTime = "1000"
    _save(ds, outdir / "RG1_MF2.dcm")

    # Pixel Padding Value: a 48-pixel border set to 32767 (absent from the
    # image, whose stored maximum is 26479), as a CR reader marks the area
    # outside the collimator.
    ds = fresh()
    _new_instance(ds, "RG1_PAD",
                  "RG1_UNCR with a 48-pixel border set to Pixel Padding Value 32767")
    pad = px.copy()
    b = 48
    pad[:b, :] = maxv
    pad[-b:, :] = maxv
    pad[:, :b] = maxv
    pad[:, -b:] = maxv
    _set_pixels(ds, pad, 16, 15)
    ds.PixelPaddingValue = maxv
    ds["PixelPaddingValue"].VR = "US"
    _save(ds, outdir / "RG1_PAD.dcm")

    # Signed: stored' = stored - 16384 in 15-bit two's complement, bits 15
    # (above High Bit) left ZERO rather than sign-extended, so a reader must
    # sign-extend from bit 14 itself.  Rescale Intercept 16384 restores the
    # original modality values, so the window is unchanged.
    ds = fresh()
    _new_instance(ds, "RG1_SIGNED",
                  "RG1_UNCR - 16384, PixelRepresentation 1, 15 bits stored, "
                  "bit 15 not sign-extended, RescaleIntercept 16384")
    sv = (px - 16384) & 0x7FFF  # 15-bit two's complement, bit 15 clear
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 15, 14
    ds.PixelRepresentation = 1
    ds.PixelData = sv.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.RescaleIntercept = "16384"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    _save(ds, outdir / "RG1_SIGNED.dcm")


def j2k(src: Path, dst: Path) -> None:
    ds = pydicom.dcmread(src)
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    ds.file_meta.ImplementationVersionName = "CXR_TRIAGE_FX"
    ds.save_as(dst, enforce_file_format=True)


def pgm(src: Path, dst: Path) -> None:
    ds = pydicom.dcmread(src)
    assert ds.PixelRepresentation == 0 and ds.SamplesPerPixel == 1
    arr = ds.pixel_array
    if getattr(ds, "NumberOfFrames", 1) > 1:
        arr = arr[0]
    maxval = (1 << ds.BitsStored) - 1
    hdr = f"P5\n{ds.Columns} {ds.Rows}\n{maxval}\n".encode()
    body = arr.astype(">u2" if maxval > 255 else "u1").tobytes()
    dst.write_bytes(hdr + body)


def htj2k(src: Path, j2c: Path, dst: Path, tsuid: str) -> None:
    ds = pydicom.dcmread(src)
    tsuid = UID(tsuid)
    assert tsuid in (HTJ2KLossless, HTJ2K), tsuid
    ds.PixelData = encapsulate([j2c.read_bytes()], has_bot=True)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = tsuid
    ds.file_meta.ImplementationVersionName = "CXR_TRIAGE_FX"
    if tsuid == HTJ2K:
        _new_instance(ds, "RG1_HTJ2K", "RG1_UNCR encoded as irreversible HTJ2K (ojph_compress)")
        ds.LossyImageCompression = "01"
        ratio = (ds.Rows * ds.Columns * 2) / j2c.stat().st_size
        ds.LossyImageCompressionRatio = _fmt_ds(round(ratio, 2))
        ds.LossyImageCompressionMethod = "ISO_15444_15"
    ds.save_as(dst, enforce_file_format=True)


def check(path: Path, tsuid: str) -> None:
    ds = pydicom.dcmread(path)
    got = ds.file_meta.TransferSyntaxUID
    if got != tsuid:
        sys.exit(f"{path.name}: transfer syntax {got}, expected {tsuid}")
    arr = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    shape = (ds.Rows, ds.Columns) if frames == 1 else (frames, ds.Rows, ds.Columns)
    if arr.shape != shape:
        sys.exit(f"{path.name}: decoded shape {arr.shape}, expected {shape}")


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit(__doc__)
    cmd, args = argv[0], argv[1:]
    if cmd == "locate":
        locate(args)
    elif cmd == "derive":
        derive(Path(args[0]), Path(args[1]))
    elif cmd == "j2k":
        j2k(Path(args[0]), Path(args[1]))
    elif cmd == "pgm":
        pgm(Path(args[0]), Path(args[1]))
    elif cmd == "htj2k":
        htj2k(Path(args[0]), Path(args[1]), Path(args[2]), args[3])
    elif cmd == "uid":
        print(fixture_uid(args[0]))
    elif cmd == "check":
        if not args or len(args) % 2:
            sys.exit("check needs FILE UID pairs")
        for i in range(0, len(args), 2):
            check(Path(args[i]), args[i + 1])
    else:
        sys.exit(f"unknown subcommand {cmd!r}\n\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
