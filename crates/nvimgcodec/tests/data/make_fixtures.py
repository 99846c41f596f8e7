"""Makes the JPEG 2000 / HTJ2K fixtures of the GPU test and their manifest.

Lossless codestreams of synthetic greyscale images (no patient data), made
with OpenJPEG's opj_compress (Debian libopenjp2-tools 2.5.0) and OpenJPH's
ojph_compress (Debian openjph-tools 0.9.0); each was checked to round-trip
with opj_decompress / ojph_expand. `expected.txt` holds, per file, the
geometry and the SHA-256 of the samples as little-endian 16-bit words
(two's complement when signed), which is what cxr-nvimgcodec returns.

Run from this directory with a Python that has numpy:
    python make_fixtures.py
"""

import hashlib
import subprocess

import numpy as np

rng = np.random.default_rng(20240611)


def pgm(path, a, maxval):
    h, w = a.shape
    with open(path, "wb") as f:
        f.write(b"P5\n%d %d\n%d\n" % (w, h, maxval))
        f.write(a.astype(">u2").tobytes())


# 12-bit unsigned, 256x192: ramp + disc + noise, both extremes present
y, x = np.mgrid[0:192, 0:256]
u12 = 400 + 12 * x + 5 * y + 800 * (((x - 150) ** 2 + (y - 90) ** 2) < 40**2)
u12 = np.clip(u12 + rng.integers(0, 24, size=u12.shape), 0, 4095).astype(np.uint16)
u12[0, 0], u12[0, 1] = 0, 4095

# 16-bit unsigned, 160x128, the full range
y, x = np.mgrid[0:128, 0:160]
u16 = ((x * 409 + y * 7 + rng.integers(0, 64, size=x.shape)) % 65536).astype(np.uint16)
u16[0, 0], u16[0, 1] = 0, 65535

# 16-bit signed, 96x64, around zero
y, x = np.mgrid[0:64, 0:96]
s16 = (x - 48) * 300 + (y - 32) * 40 + rng.integers(-50, 50, size=x.shape)
s16 = np.clip(s16, -32768, 32767).astype(np.int16)
s16[0, 0], s16[0, 1] = -32768, 32767

pgm("/tmp/u12.pgm", u12, 4095)
pgm("/tmp/u16.pgm", u16, 65535)
s16.astype("<i2").tofile("/tmp/s16.rawl")
subprocess.run(["opj_compress", "-i", "/tmp/u12.pgm", "-o", "u12.j2k"], check=True)
subprocess.run(["opj_compress", "-i", "/tmp/u16.pgm", "-o", "u16.j2k"], check=True)
subprocess.run(
    ["opj_compress", "-i", "/tmp/s16.rawl", "-o", "s16.j2k", "-F", "96,64,1,16,s"], check=True
)
subprocess.run(
    ["ojph_compress", "-i", "/tmp/u12.pgm", "-o", "u12_ht.j2c", "-reversible", "true"], check=True
)

with open("expected.txt", "w") as f:
    f.write("# file width height precision signed sha256(samples as LE u16)\n")
    for name, a, bits in [
        ("u12.j2k", u12, 12),
        ("u12_ht.j2c", u12, 12),
        ("u16.j2k", u16, 16),
        ("s16.j2k", s16, 16),
    ]:
        digest = hashlib.sha256(a.astype("<u2" if a.dtype == np.uint16 else "<i2").tobytes())
        signed = int(a.dtype == np.int16)
        f.write(f"{name} {a.shape[1]} {a.shape[0]} {bits} {signed} {digest.hexdigest()}\n")
