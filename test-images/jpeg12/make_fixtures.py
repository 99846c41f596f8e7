"""Build the JPEG codestream fixtures for src/dicom/jpeg12.rs.

Run through make.sh (which checks for dcmtk and picks the Python). Every
fixture is a raw JPEG codestream (`*.jpg`) plus, where the test compares
pixels, the dcmtk (`dcmdjpeg`) decode of it as a PGM/PPM (`*.pgm`, `*.ppm`;
maxval 4095 means 16-bit big-endian samples, 255 means 8-bit).

Most streams come from `dcmcjpeg`. dcmcjpeg cannot write restart intervals,
16-bit quantisation tables or non-interleaved colour scans, so those streams
come from the small encoder below (written from ITU T.81: forward DCT, Annex K
optimal Huffman tables); dcmdjpeg is still the reference decoder for them.

Usage: make_fixtures.py OUTDIR WORKDIR
"""

import os
import subprocess
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

TS_BASELINE = "1.2.840.10008.1.2.4.50"
TS_EXTENDED = "1.2.840.10008.1.2.4.51"
UID_ROOT = "1.2.826.0.1.3680043.8.498.7712."


def test_pattern(w, h, bits, seed):
    """Smooth gradients, a sinusoid, noise and hard edges that hit 0 and max."""
    rng = np.random.default_rng(seed)
    maxv = (1 << bits) - 1
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = maxv * (0.15 + 0.5 * x / max(w - 1, 1) + 0.2 * y / max(h - 1, 1))
    img += 0.12 * maxv * np.sin(x / 5.3) * np.cos(y / 7.1)
    img += rng.normal(0.0, 0.01 * maxv, size=(h, w))
    img[h // 5 : h // 2, w // 6 : w // 3] = maxv  # saturated block, edges ring
    img[(h * 3) // 5 : (h * 4) // 5, (w * 3) // 5 : (w * 4) // 5] = 0
    r2 = (x - 0.7 * w) ** 2 + (y - 0.3 * h) ** 2
    img[r2 < (0.12 * min(w, h)) ** 2] = 0.9 * maxv
    img[:, -3:] = np.linspace(0, maxv, h)[:, None]  # edge in the padding block
    return np.clip(np.rint(img), 0, maxv).astype(np.uint16)


def write_dicom(path, planes, bits, ts=ExplicitVRLittleEndian, frame=None,
                photometric=None):
    """Uncompressed (planes) or encapsulated (frame bytes) secondary capture."""
    h, w = planes[0].shape if planes is not None else frame[1]
    ncomp = len(planes) if planes is not None else frame[2]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = UID_ROOT + "1"
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = UID_ROOT + "1"
    ds.StudyInstanceUID = UID_ROOT + "2"
    ds.SeriesInstanceUID = UID_ROOT + "3"
    ds.Modality = "OT"
    ds.PatientName = "JPEG12^Fixture"
    ds.PatientID = "JPEG12"
    ds.Rows = h
    ds.Columns = w
    ds.SamplesPerPixel = ncomp
    if photometric is None:
        photometric = "MONOCHROME2" if ncomp == 1 else "RGB"
    ds.PhotometricInterpretation = photometric
    if ncomp > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if planes is not None:
        arr = np.stack(planes, axis=-1)
        dtype = np.uint8 if bits == 8 else "<u2"
        ds.PixelData = arr.astype(dtype).tobytes()
    else:
        ds.PixelData = encapsulate([frame[0]])
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def first_fragment(path):
    ds = pydicom.dcmread(path)
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def dcmtk_reference(dcm_in, work, bits, ncomp):
    """Decode with dcmdjpeg (never colour-converting) and return (h, w, c)."""
    out = os.path.join(work, "ref.dcm")
    subprocess.run(["dcmdjpeg", "-q", "+cn", dcm_in, out], check=True)
    ds = pydicom.dcmread(out)
    dtype = np.uint8 if ds.BitsAllocated == 8 else "<u2"
    n = ds.Rows * ds.Columns * ncomp
    arr = np.frombuffer(ds.PixelData, dtype=dtype)[:n]
    return arr.reshape(ds.Rows, ds.Columns, ncomp).astype(np.uint16)


def write_pnm(path, arr, bits):
    h, w, c = arr.shape
    maxv = (1 << bits) - 1
    magic = b"P5" if c == 1 else b"P6"
    body = arr.astype(">u2" if maxv > 255 else np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(magic + b"\n%d %d\n%d\n" % (w, h, maxv) + body)


# ---------------------------------------------------------------------------
# A small sequential DCT encoder for the streams dcmcjpeg cannot make.

ZIGZAG = sorted(((x, y) for y in range(8) for x in range(8)),
                key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 else p[0]))
ZIGZAG = [y * 8 + x for (x, y) in ZIGZAG]

STD_LUMA_Q = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]).reshape(8, 8)


def dct_matrix():
    m = np.zeros((8, 8))
    for u in range(8):
        cu = np.sqrt(0.5) if u == 0 else 1.0
        for x in range(8):
            m[u, x] = 0.5 * cu * np.cos((2 * x + 1) * u * np.pi / 16)
    return m


def category(v):
    return int(abs(int(v))).bit_length()


def bits_of(v, s):
    """The s magnitude bits of v (negative values as v - 1, T.81 F.1.2.1)."""
    if v < 0:
        v += (1 << s) - 1
    return format(v, "0%db" % s) if s else ""


def optimal_table(freq):
    """Code lengths per T.81 K.2 and K.3; returns (BITS[1..16], HUFFVAL)."""
    freq = list(freq) + [1]  # reserved symbol 256: no code is all ones
    n = len(freq)
    codesize = [0] * n
    others = [-1] * n
    while True:
        live = [i for i in range(n) if freq[i] > 0]
        if len(live) < 2:
            break
        # least frequency, ties to the larger symbol value
        v1 = min(live, key=lambda i: (freq[i], -i))
        v2 = min((i for i in live if i != v1), key=lambda i: (freq[i], -i))
        freq[v1] += freq[v2]
        freq[v2] = 0
        codesize[v1] += 1
        while others[v1] != -1:
            v1 = others[v1]
            codesize[v1] += 1
        others[v1] = v2
        codesize[v2] += 1
        while others[v2] != -1:
            v2 = others[v2]
            codesize[v2] += 1
    bits = [0] * 40
    for s in codesize:
        if s:
            bits[s] += 1
    i = 39
    while i > 16:
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
        i -= 1
    i = 16
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1
    order = sorted((codesize[s], s) for s in range(n - 1) if codesize[s])
    return bits[1:17], [s for _, s in order]


def code_table(bits, vals):
    codes = {}
    code = 0
    k = 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = format(code, "0%db" % length)
            code += 1
            k += 1
        code <<= 1
    return codes


def seg(marker, payload):
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def stuff(bitstring):
    bitstring += "1" * (-len(bitstring) % 8)
    out = bytearray()
    for i in range(0, len(bitstring), 8):
        b = int(bitstring[i : i + 8], 2)
        out.append(b)
        if b == 0xFF:
            out.append(0)
    return bytes(out)


def encode(planes, bits, qtable, scans, comp_ids, sof=0xC1, q16=False,
           fill_before_rst=0):
    """Encode 1x1-sampled planes. scans: list of (component indices, Ri)."""
    h, w = planes[0].shape
    bh, bw = (h + 7) // 8, (w + 7) // 8
    m = dct_matrix()
    # Quantised coefficients, zigzag order, per component per block. Edge
    # blocks replicate the last row/column as T.81 A.2.4 suggests.
    coefs = []
    for p in planes:
        padded = np.pad(p.astype(np.float64), ((0, bh * 8 - h), (0, bw * 8 - w)),
                        mode="edge") - (1 << (bits - 1))
        blocks = np.zeros((bh, bw, 64), dtype=np.int64)
        for by in range(bh):
            for bx in range(bw):
                f = padded[by * 8 : by * 8 + 8, bx * 8 : bx * 8 + 8]
                c = np.rint((m @ f @ m.T) / qtable).astype(np.int64).reshape(64)
                blocks[by, bx] = c[ZIGZAG]
        coefs.append(blocks)

    out = bytearray(b"\xff\xd8")
    out += seg(0xE1, b"cxr-triage jpeg12 fixture\x00" + bytes(range(40)))
    out += seg(0xFE, b"restart/fill/16-bit DQT test stream")
    pq = 1 if q16 else 0
    qz = qtable.reshape(64)[ZIGZAG]
    qbytes = b"".join(int(v).to_bytes(2 if q16 else 1, "big") for v in qz)
    out += seg(0xDB, bytes([(pq << 4) | 0]) + qbytes)
    frame = bytes([bits]) + h.to_bytes(2, "big") + w.to_bytes(2, "big")
    frame += bytes([len(planes)])
    for cid in comp_ids:
        frame += bytes([cid, 0x11, 0])
    out += seg(sof, frame)

    for comps, ri in scans:
        # Symbols of the whole scan first, to build its optimal tables.
        mcus = [(by, bx) for by in range(bh) for bx in range(bw)]
        runs = []  # per MCU: list of (ci, dc_cat, dc_bits, [(rs, bits)])
        pred = {ci: 0 for ci in comps}
        for n, (by, bx) in enumerate(mcus):
            if ri and n % ri == 0:
                pred = {ci: 0 for ci in comps}
            mcu = []
            for ci in comps:
                blk = coefs[ci][by, bx]
                diff = int(blk[0]) - pred[ci]
                pred[ci] = int(blk[0])
                s = category(diff)
                acs = []
                run = 0
                last = max([k for k in range(1, 64) if blk[k] != 0], default=0)
                for k in range(1, last + 1):
                    v = int(blk[k])
                    if v == 0:
                        run += 1
                        continue
                    while run > 15:
                        acs.append((0xF0, ""))
                        run -= 16
                    sz = category(v)
                    acs.append(((run << 4) | sz, bits_of(v, sz)))
                    run = 0
                if last < 63:
                    acs.append((0x00, ""))
                mcu.append((ci, s, bits_of(diff, s), acs))
            runs.append(mcu)
        # Table 0 for the first component of the scan, 1 for the others.
        tsel = {ci: (0 if i == 0 else 1) for i, ci in enumerate(comps)}
        dht = b""
        codes = {}
        for t in sorted(set(tsel.values())):
            dcf = [0] * 256
            acf = [0] * 256
            for mcu in runs:
                for ci, s, _, acs in mcu:
                    if tsel[ci] == t:
                        dcf[s] += 1
                        for rs, _ in acs:
                            acf[rs] += 1
            for cls, fr in ((0, dcf), (1, acf)):
                b, v = optimal_table(fr)
                dht += bytes([(cls << 4) | t]) + bytes(b) + bytes(v)
                codes[(cls, t)] = code_table(b, v)
        out += seg(0xC4, dht)
        if ri:
            out += seg(0xDD, ri.to_bytes(2, "big"))
        sos = bytes([len(comps)])
        for ci in comps:
            sos += bytes([comp_ids[ci], (tsel[ci] << 4) | tsel[ci]])
        sos += bytes([0, 63, 0])
        out += seg(0xDA, sos)
        bitstr = []
        for n, mcu in enumerate(runs):
            if ri and n > 0 and n % ri == 0:
                out += stuff("".join(bitstr))
                bitstr = []
                out += b"\xff" * fill_before_rst
                out += bytes([0xFF, 0xD0 + ((n // ri - 1) % 8)])
            for ci, s, dbits, acs in mcu:
                t = tsel[ci]
                bitstr.append(codes[(0, t)][s] + dbits)
                for rs, abits in acs:
                    bitstr.append(codes[(1, t)][rs] + abits)
        out += stuff("".join(bitstr))
        if ri:
            # DRI 0 disables restarts for any later scan, as T.81 B.2.4.4 allows
            out += seg(0xDD, b"\x00\x00")
    out += b"\xff\xd9"
    return bytes(out)


# ---------------------------------------------------------------------------


def main():
    outdir, work = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    sizes = {}

    def save(name, jpeg, ref=None, bits=None):
        with open(os.path.join(outdir, name + ".jpg"), "wb") as f:
            f.write(jpeg)
        if ref is not None:
            ext = ".pgm" if ref.shape[2] == 1 else ".ppm"
            write_pnm(os.path.join(outdir, name + ext), ref, bits)
        sizes[name] = len(jpeg)

    def via_dcmcjpeg(name, planes, bits, args, reference=True):
        src = os.path.join(work, name + "_in.dcm")
        enc = os.path.join(work, name + "_jpeg.dcm")
        write_dicom(src, planes, bits)
        subprocess.run(["dcmcjpeg", "-q"] + args + [src, enc], check=True)
        jpeg = first_fragment(enc)
        ref = dcmtk_reference(enc, work, bits, len(planes)) if reference else None
        save(name, jpeg, ref, bits)

    def via_encoder(name, planes, bits, jpeg, ts):
        enc = os.path.join(work, name + "_jpeg.dcm")
        h, w = planes[0].shape
        write_dicom(enc, None, bits, ts=ts, frame=(jpeg, (h, w), len(planes)))
        save(name, jpeg, dcmtk_reference(enc, work, bits, len(planes)), bits)

    g12a = test_pattern(97, 61, 12, 1)
    g12b = test_pattern(256, 200, 12, 2)
    g8a = test_pattern(97, 61, 8, 3)
    # dcmtk libijg12: extended sequential, optimised Huffman tables
    via_dcmcjpeg("mono12_97x61", [g12a], 12, ["+ee"])
    via_dcmcjpeg("mono12_256x200_q75", [g12b], 12, ["+ee", "+q", "75"])
    # libijg8 baseline, once with the Annex K standard tables
    via_dcmcjpeg("mono8_97x61", [g8a], 8, ["+eb"])
    via_dcmcjpeg("mono8_97x61_stdhuff", [g8a], 8, ["+eb", "-ho", "+q", "50"])

    # Colour, 4:4:4 interleaved (YCbCr as coded; dcmdjpeg +cn keeps it).
    rgb = [test_pattern(45, 37, 8, s) for s in (4, 5, 6)]
    rgb[1] = rgb[1][:, ::-1].copy()
    rgb[2] = rgb[2][::-1, :].copy()
    via_dcmcjpeg("ycc8_45x37_444", rgb, 8, ["+eb", "+s4"])
    # Unsupported by the decoder: refs not needed.
    via_dcmcjpeg("ycc8_45x37_422", rgb, 8, ["+eb"], reference=False)
    via_dcmcjpeg("mono12_33x21_progressive", [test_pattern(33, 21, 12, 7)], 12,
                 ["+ep"], reference=False)

    # Restart intervals (7 MCUs: not a divisor of the 13-block row), fill
    # bytes before RSTn, 16-bit DQT.
    q12 = np.maximum(1, STD_LUMA_Q * 3)
    g12c = test_pattern(97, 61, 12, 8)
    jpeg = encode([g12c], 12, q12, [([0], 7)], [1], q16=True, fill_before_rst=2)
    via_encoder("mono12_97x61_rst7", [g12c], 12, jpeg, TS_EXTENDED)
    # Three non-interleaved scans; restarts in the first two only.
    c8 = [test_pattern(45, 37, 8, s) for s in (9, 10, 11)]
    jpeg = encode(c8, 8, STD_LUMA_Q // 2 + 1, [([0], 3), ([1], 5), ([2], 0)],
                  [ord("R"), ord("G"), ord("B")], sof=0xC0)
    via_encoder("rgb8_45x37_3scans", c8, 8, jpeg, TS_BASELINE)
    # Interleaved 3-component 12-bit with restarts every MCU.
    c12 = [test_pattern(21, 19, 12, s) for s in (12, 13, 14)]
    jpeg = encode(c12, 12, STD_LUMA_Q, [([0, 1, 2], 1)],
                  [ord("R"), ord("G"), ord("B")])
    via_encoder("rgb12_21x19_rst1", c12, 12, jpeg, TS_EXTENDED)

    for name, n in sorted(sizes.items()):
        print("  %-28s %6d bytes" % (name + ".jpg", n))


if __name__ == "__main__":
    main()
