"""Shared pieces of the reference-model scripts: the network, the data sets
made by make_data.sh, and the metrics. NOT FOR CLINICAL USE: the model is
trained on synthetic radiographs to test and benchmark the pipeline.
"""
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
OUT = ROOT / "out"
FINDINGS = ["tuberculosis", "malignant_nodule"]
SIZE = 256  # model input, pixels per side
STRIDE = 8  # heatmap cell, model-input pixels
GRID = SIZE // STRIDE


def conv(cin, cout, stride=1, dilation=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ReferenceNet(nn.Module):
    """A small fully convolutional CNN. Its 1x1 head gives one logit map per
    finding on a 32x32 grid (stride 8); the image score is a log-sum-exp
    pooling of that map, so the map is the model's class-activation heatmap:
    the score can only be high where the map is."""

    def __init__(self, r=4.0):
        super().__init__()
        self.r = r
        # Fixed high-pass front end: the image minus its local means, so
        # small opacities stand out from the smooth anatomy around them.
        self.local = nn.ModuleList([nn.AvgPool2d(k, stride=1, padding=k // 2, count_include_pad=False)
                                    for k in (7, 21)])
        self.features = nn.Sequential(
            conv(3, 24, stride=2),  # 128
            conv(24, 32, stride=2),  # 64
            conv(32, 32),
            conv(32, 48, stride=2),  # 32
            conv(48, 64),
            conv(64, 64, dilation=2),
            conv(64, 64, dilation=4),
            conv(64, 64, dilation=8),
        )
        self.head = nn.Conv2d(64, len(FINDINGS), 1)

    def forward(self, image):
        x = torch.cat([image] + [image - pool(image) for pool in self.local], dim=1)
        maps = self.head(self.features(x))
        n, c, h, w = maps.shape
        flat = maps.reshape(n, c, h * w)
        scores = (torch.logsumexp(self.r * flat, dim=2) - float(np.log(h * w))) / self.r
        return scores, maps


def load_onnx_weights(model, path):
    """Loads an exported reference model (export_onnx.py) into `model`. The
    export folds each batch norm into its convolution, so the convolutions
    take the folded weights and biases and every batch norm becomes the
    identity (scale 1, mean 0, variance 1 - eps); train with batch norm
    frozen (eval mode) to keep it so. The result computes what the ONNX file
    computes."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    convs = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Conv"]
    blocks = list(model.features)
    if len(convs) != len(blocks) + 1:
        raise ValueError(f"{path}: {len(convs)} convolutions, expected {len(blocks) + 1}")
    with torch.no_grad():
        for node, block in zip(convs, blocks):
            conv, bn = block[0], block[1]
            w, b = inits[node.input[1]], inits[node.input[2]]
            conv.weight.copy_(torch.from_numpy(w))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        model.head.weight.copy_(torch.from_numpy(inits[convs[-1].input[1]]))
        model.head.bias.copy_(torch.from_numpy(inits[convs[-1].input[2]]))
    return model


def load_set(name):
    """One data set made by make_data.sh: the tensors (float32 [N,1,256,256]
    in [0,1], memory-mapped), the rows that were read, labels [N,2], and per
    image the boxes of each finding and the image's extent, both in model
    pixels (model = image * scale + offset)."""
    images = np.load(DATA / f"{name}.npy", mmap_mode="r")
    truth = {}
    with open(DATA / name / "ground_truth.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            truth[rec["file"]] = rec
    labels, boxes, extents, rows = [], [], [], []
    with open(DATA / f"{name}.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if rec["index"] is None:
                continue
            rows.append(rec["index"])
            t = truth[Path(rec["file"]).name]
            g = rec["geometry"]
            sx, sy, ox, oy = g["scale_x"], g["scale_y"], g["offset_x"], g["offset_y"]
            labels.append([float(t["labels"]["tuberculosis"]), float(t["labels"]["malignant_nodule"])])
            bxs = [[], []]
            for finding in t["findings"]:
                if finding["type"] == "tb":
                    k = 0
                elif finding["nodule"]["malignant_looking"]:
                    k = 1
                else:
                    continue  # benign-looking nodule: a negative for both maps
                x0, y0, x1, y1 = finding["bbox"]
                bxs[k].append([x0 * sx + ox, y0 * sy + oy, x1 * sx + ox, y1 * sy + oy])
            boxes.append(bxs)
            extents.append([ox, oy, ox + g["image_width"] * sx, oy + g["image_height"] * sy])
    return images, np.asarray(rows), np.asarray(labels, np.float32), boxes, np.asarray(extents)


def cell_targets(bxs, soft=True):
    """Heatmap targets [2,32,32] for one image's boxes (model pixels).

    soft: each cell gets the share of the box it holds, relative to the
    box's fullest cell (1 where the lesion is, fractions on the cells it only
    grazes), so the weighted centroid of the map's peak lands on the box
    centre. Otherwise every cell the box touches is 1. 0 elsewhere."""
    t = np.zeros((2, GRID, GRID), np.float32)
    edges = np.arange(GRID + 1, dtype=np.float64) * STRIDE
    for k in range(2):
        for x0, y0, x1, y1 in bxs[k]:
            if not soft:
                gx0, gy0 = max(int(x0 // STRIDE), 0), max(int(y0 // STRIDE), 0)
                gx1, gy1 = min(int(np.ceil(x1 / STRIDE)), GRID), min(int(np.ceil(y1 / STRIDE)), GRID)
                t[k, gy0:max(gy1, gy0 + 1), gx0:max(gx1, gx0 + 1)] = 1.0
                continue
            ox = np.clip(np.minimum(edges[1:], x1) - np.maximum(edges[:-1], x0), 0, None)
            oy = np.clip(np.minimum(edges[1:], y1) - np.maximum(edges[:-1], y0), 0, None)
            cover = np.outer(oy, ox)
            if cover.max() > 0:
                t[k] = np.maximum(t[k], cover / cover.max())
    return t


def on_image_cells(extent):
    """[32,32] bool: cells whose centre lies on the image, not on letterbox
    padding (the service never puts a peak on padding)."""
    c = (np.arange(GRID) + 0.5) * STRIDE
    x0, y0, x1, y1 = extent
    return ((c[:, None] >= y0) & (c[:, None] < y1)) & ((c[None, :] >= x0) & (c[None, :] < x1))


def auc(scores, labels):
    """ROC AUC by the rank-sum formula (ties get half)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    # average ranks over ties
    i = 0
    r = np.empty(len(allv))
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        r[i:j + 1] = (i + j) / 2 + 1
        i = j + 1
    ranks[order] = r
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def refined_peak(m, on_image=None):
    """Argmax cell refined by the weighted centroid of its 3x3 neighbourhood
    (sigmoid values above the neighbourhood's minimum, padding cells 0), in
    model pixels; the same rule as the service (src/triage/heatmap.rs)."""
    p = 1 / (1 + np.exp(-m.astype(np.float64)))
    if on_image is not None:
        p = np.where(on_image, p, 0.0)
    cy, cx = np.unravel_index(np.argmax(p), p.shape)
    y0, y1 = max(cy - 1, 0), min(cy + 2, p.shape[0])
    x0, x1 = max(cx - 1, 0), min(cx + 2, p.shape[1])
    w = p[y0:y1, x0:x1] - p[y0:y1, x0:x1].min()
    if w.sum() <= 0:
        return (cx + 0.5) * STRIDE, (cy + 0.5) * STRIDE
    ys, xs = np.mgrid[y0:y1, x0:x1]
    return ((xs + 0.5) * w).sum() / w.sum() * STRIDE, ((ys + 0.5) * w).sum() / w.sum() * STRIDE


def cell_peak(m, on_image=None):
    """Centre of the argmax cell (padding cells excluded), model pixels."""
    p = np.where(on_image, m, -np.inf) if on_image is not None else m
    cy, cx = np.unravel_index(np.argmax(p), p.shape)
    return (cx + 0.5) * STRIDE, (cy + 0.5) * STRIDE


def peak_hits(maps, boxes, extents, k, rule=refined_peak):
    """Share of images with a box of finding k whose heatmap peak lies
    inside one of those boxes (model pixels, half-open)."""
    hits = total = 0
    for m, bxs, ext in zip(maps, boxes, extents):
        if not bxs[k]:
            continue
        total += 1
        px, py = rule(m[k], on_image_cells(ext))
        if any(x0 <= px < x1 and y0 <= py < y1 for x0, y0, x1, y1 in bxs[k]):
            hits += 1
    return hits / max(total, 1), total


def predict(model, images, rows, batch=64):
    model.eval()
    scores, maps = [], []
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            x = torch.from_numpy(np.asarray(images[rows[i:i + batch]], np.float32)) * 2 - 1
            s, m = model(x)
            scores.append(torch.sigmoid(s).numpy())
            maps.append(m.numpy())
    return np.concatenate(scores), np.concatenate(maps)
