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
preserve_range=True) as TorchXRayVision calls it, tf_{bilinear,nearest,area}
with TensorFlow's tf.image.resize (tensorflow-cpu from PyPI, antialias off,
TF2's half-pixel centres), torch_{nearest,nearest_exact,bilinear,
bilinear_antialias,bicubic} with torch.nn.functional.interpolate
(align_corners=False; float32 NCHW). Nothing else is done to the pixels.

PyTorch from PyPI needs the CUDA runtime wheels (about 5 GB), too much for
the test set-up, so torch's outputs are recorded: `--record-torch` (run by
a Python that has torch, e.g. the training venv) writes them, with the
SHA-256 of the input image and torch's version, to
test-images/frameworks/torch-resize.npz (as round(v * 65535) in uint16:
exact for nearest, within 1/131070 otherwise); without torch the recorded
outputs are used, after checking that the input is the same image. To
record again:

    CXR_TORCH_PYTHON=.venv-train/bin/python cargo test -p cxr-model --test conventions
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np

# The frameworks are imported where they are used: recording torch's
# outputs needs only numpy and torch.

PIL_FILTERS = {
    "pil_nearest": "NEAREST",
    "pil_bilinear": "BILINEAR",
    "pil_bicubic": "BICUBIC",
    "pil_box": "BOX",
    "pil_hamming": "HAMMING",
    "pil_lanczos": "LANCZOS",
}
CV_FLAGS = {
    "opencv_nearest": "INTER_NEAREST",
    "opencv_nearest_exact": "INTER_NEAREST_EXACT",
    "opencv_linear": "INTER_LINEAR",
    "opencv_area": "INTER_AREA",
    "opencv_cubic": "INTER_CUBIC",
}


TF_METHODS = {"tf_bilinear": "bilinear", "tf_nearest": "nearest", "tf_area": "area"}
TORCH_MODES = {
    "torch_nearest": ("nearest", {}),
    "torch_nearest_exact": ("nearest-exact", {}),
    "torch_bilinear": ("bilinear", {"align_corners": False, "antialias": False}),
    "torch_bilinear_antialias": ("bilinear", {"align_corners": False, "antialias": True}),
    "torch_bicubic": ("bicubic", {"align_corners": False, "antialias": False}),
}
TORCH_RECORD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "frameworks", "torch-resize.npz")


def source(grey16: np.ndarray, bits: int) -> tuple[np.ndarray, float]:
    if bits == 16:
        return grey16.astype(np.float32), 65535.0
    return np.round(grey16 / 257.0).astype(np.uint8), 255.0


def torch_resize(grey16: np.ndarray, name: str, size: tuple[int, int], bits: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    src, top = source(grey16, bits)
    mode, extra = TORCH_MODES[name]
    x = torch.from_numpy(src.astype(np.float32))[None, None]
    out = F.interpolate(x, size=(size[1], size[0]), mode=mode, **extra)[0, 0].numpy()
    return (out.astype(np.float64) / top).astype(np.float32)


def job_key(job: dict) -> str:
    return f"{job['name']}-{job['width']}x{job['height']}-{job['bits']}"


def digest(grey16: np.ndarray) -> str:
    return hashlib.sha256(grey16.astype("<u2").tobytes()).hexdigest()


def record_torch(grey16: np.ndarray, jobs: list[dict]) -> None:
    import torch

    arrays = {}
    for job in jobs:
        if job["name"] in TORCH_MODES:
            out = torch_resize(grey16, job["name"], (job["width"], job["height"]), job["bits"])
            arrays[job_key(job)] = np.round(np.clip(out, 0.0, 1.0) * 65535.0).astype(np.uint16)
    os.makedirs(os.path.dirname(TORCH_RECORD), exist_ok=True)
    np.savez_compressed(TORCH_RECORD, input_sha256=np.array(digest(grey16)),
                        torch_version=np.array(torch.__version__), **arrays)
    print(f"recorded {len(arrays)} torch outputs (torch {torch.__version__}) in {TORCH_RECORD}")


def recorded_torch(grey16: np.ndarray, job: dict) -> np.ndarray:
    with np.load(TORCH_RECORD) as rec:
        if str(rec["input_sha256"]) != digest(grey16):
            raise SystemExit(f"{TORCH_RECORD} was recorded from another image: record it again")
        key = job_key(job)
        if key not in rec:
            raise SystemExit(f"{TORCH_RECORD} has no {key}: record it again")
        return (rec[key].astype(np.float64) / 65535.0).astype(np.float32)


def resize(grey16: np.ndarray, name: str, size: tuple[int, int], bits: int) -> np.ndarray:
    src, top = source(grey16, bits)
    if name in PIL_FILTERS:
        from PIL import Image

        mode = "F" if bits == 16 else "L"
        out = np.asarray(Image.fromarray(src, mode=mode).resize(
            size, Image.Resampling[PIL_FILTERS[name]]))
    elif name in CV_FLAGS:
        import cv2

        out = cv2.resize(src, size, interpolation=getattr(cv2, CV_FLAGS[name]))
    elif name in TF_METHODS:
        import tensorflow as tf

        out = tf.image.resize(src[..., None], (size[1], size[0]), method=TF_METHODS[name],
                              antialias=False).numpy()[..., 0]
    elif name == "skimage":
        import skimage.transform

        # As TorchXRayVision's XRayResizer calls it.
        out = skimage.transform.resize(
            src.astype(np.float64), (size[1], size[0]), mode="constant", preserve_range=True
        )
    else:
        raise SystemExit(f"unknown convention {name}")
    return (out.astype(np.float64) / top).astype(np.float32)


def main() -> None:
    record = sys.argv[1] == "--record-torch"
    spec = json.load(open(sys.argv[-1]))
    grey = np.fromfile(spec["image"], dtype="<u2").reshape(spec["height"], spec["width"])
    if record:
        record_torch(grey, spec["jobs"])
        return
    for job in spec["jobs"]:
        if job["name"] in TORCH_MODES:
            out = recorded_torch(grey, job)
        else:
            out = resize(grey, job["name"], (job["width"], job["height"]), job["bits"])
        out.astype("<f4").tofile(job["out"])


if __name__ == "__main__":
    main()
