#!/usr/bin/env python3
"""The training frameworks' own resize of one grey image, for the
interpolation-convention tests (crates/model/tests/conventions.rs).

Usage: python test-images/resize_reference.py JOBS.json

JOBS.json: {"image": RAW, "width": W, "height": H, "jobs": [{"name":
CONVENTION, "width": OW, "height": OH, "bits": 8 or 16, "out": PATH}, ...]}.
RAW holds W x H unsigned 16-bit little-endian grey values (0 = black). Each
job resizes the image with the framework's function and writes OW x OH
float32 little-endian values in [0, 1] to PATH:

- bits 16: the values as float32 (Pillow mode "F", OpenCV float32), divided
  by 65535 after resizing;
- bits 8: round(v / 257) as uint8 (Pillow mode "L", OpenCV uint8), divided
  by 255 after resizing — what a pipeline on 8-bit PNGs or JPEGs sees.

Conventions: pil_{nearest,bilinear,bicubic,box,hamming,lanczos} with
PIL.Image.resize, opencv_{nearest,nearest_exact,linear,area,cubic} with
cv2.resize, skimage with skimage.transform.resize(mode="constant",
preserve_range=True) as TorchXRayVision calls it. Nothing else is done to
the pixels.
"""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import skimage.transform
from PIL import Image

PIL_FILTERS = {
    "pil_nearest": Image.Resampling.NEAREST,
    "pil_bilinear": Image.Resampling.BILINEAR,
    "pil_bicubic": Image.Resampling.BICUBIC,
    "pil_box": Image.Resampling.BOX,
    "pil_hamming": Image.Resampling.HAMMING,
    "pil_lanczos": Image.Resampling.LANCZOS,
}
CV_FLAGS = {
    "opencv_nearest": cv2.INTER_NEAREST,
    "opencv_nearest_exact": cv2.INTER_NEAREST_EXACT,
    "opencv_linear": cv2.INTER_LINEAR,
    "opencv_area": cv2.INTER_AREA,
    "opencv_cubic": cv2.INTER_CUBIC,
}


def resize(grey16: np.ndarray, name: str, size: tuple[int, int], bits: int) -> np.ndarray:
    if bits == 16:
        src, top = grey16.astype(np.float32), 65535.0
    else:
        src, top = np.round(grey16 / 257.0).astype(np.uint8), 255.0
    if name in PIL_FILTERS:
        mode = "F" if bits == 16 else "L"
        out = np.asarray(Image.fromarray(src, mode=mode).resize(size, PIL_FILTERS[name]))
    elif name in CV_FLAGS:
        out = cv2.resize(src, size, interpolation=CV_FLAGS[name])
    elif name == "skimage":
        # As TorchXRayVision's XRayResizer calls it.
        out = skimage.transform.resize(
            src.astype(np.float64), (size[1], size[0]), mode="constant", preserve_range=True
        )
    else:
        raise SystemExit(f"unknown convention {name}")
    return (out.astype(np.float64) / top).astype(np.float32)


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    grey = np.fromfile(spec["image"], dtype="<u2").reshape(spec["height"], spec["width"])
    for job in spec["jobs"]:
        out = resize(grey, job["name"], (job["width"], job["height"]), job["bits"])
        out.astype("<f4").tofile(job["out"])


if __name__ == "__main__":
    main()
