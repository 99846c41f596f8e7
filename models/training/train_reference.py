"""Trains the reference model (NOT FOR CLINICAL USE) on the synthetic sets
made by make_data.sh. Seeded and deterministic on the CPU:

    .venv-train/bin/python models/training/train_reference.py [--epochs 10]

Loss: binary cross-entropy on the two image scores (tuberculosis,
malignant_nodule) plus, on the heatmap logits, a per-cell binary
cross-entropy against the ground-truth boxes (synthetic data come with
boxes, so the heatmap is supervised where the lesion is, not only inferred
from the image label). Writes out/reference.pt (the epoch with the best
validation mean AUC) and out/train-log.json.
"""
import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from common import OUT, SIZE, ReferenceNet, auc, cell_targets, load_onnx_weights, load_set, peak_hits, predict


def augment(x, rng):
    """Contrast/brightness jitter and gamma, the variation real detectors
    and VOI windows add. No flips: the findings' side is part of the truth."""
    n = x.shape[0]
    gamma = torch.from_numpy(rng.uniform(0.7, 1.4, (n, 1, 1, 1)).astype(np.float32))
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32))
    bias = torch.from_numpy(rng.uniform(-0.08, 0.08, (n, 1, 1, 1)).astype(np.float32))
    return (x.clamp(0, 1) ** gamma * gain + bias).clamp(0, 1)


def shift(x, bxs, limit, rng):
    """Moves each image by up to `limit` pixels each way (uncovered pixels
    black, like letterbox padding), never pushing a lesion box out of the
    frame; the boxes move with it. Teaches that the frame's and padding's
    edges are not lesions, and places lesions at every offset to the cells."""
    out = torch.zeros_like(x)
    moved = []
    for i, b in enumerate(bxs):
        flat = b[0] + b[1]
        lo_x = -min([limit] + [int(np.floor(v[0])) for v in flat])
        hi_x = min([limit] + [int(np.floor(SIZE - v[2])) for v in flat])
        lo_y = -min([limit] + [int(np.floor(v[1])) for v in flat])
        hi_y = min([limit] + [int(np.floor(SIZE - v[3])) for v in flat])
        dx = int(rng.integers(min(lo_x, 0), max(hi_x, 0) + 1))
        dy = int(rng.integers(min(lo_y, 0), max(hi_y, 0) + 1))
        src = x[i, :, max(0, -dy):SIZE - max(0, dy), max(0, -dx):SIZE - max(0, dx)]
        out[i, :, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
        moved.append([[[v[0] + dx, v[1] + dy, v[2] + dx, v[3] + dy] for v in b[k]] for k in range(2)])
    return out, moved


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--cell-weight", type=float, default=1.0)
    ap.add_argument("--limit", type=int, default=0, help="train on the first N images (smoke test)")
    ap.add_argument("--nodule-centre-only", action="store_true",
                    help="supervise only the cell at each nodule's centre (others in its box: don't care)")
    ap.add_argument("--out", default="reference.pt", help="checkpoint name in out/")
    ap.add_argument("--stop-after", type=int, default=0, help="stop after this many epochs of the schedule")
    ap.add_argument("--resume", help="start from this checkpoint (second stage)")
    ap.add_argument("--from-onnx", help="start from an exported model's weights (batch norm folded into the "
                    "convolutions, so batch norm is frozen as the identity; implies --freeze-bn)")
    ap.add_argument("--freeze-bn", action="store_true",
                    help="keep batch-norm statistics fixed while training (fine-tuning)")
    ap.add_argument("--val", default="val", help="validation sets, comma-separated; the merit is their mean")
    ap.add_argument("--warmup", type=float, default=0.15, help="share of steps warming up (0: cosine from lr)")
    ap.add_argument("--nodule-cell-weight", type=float, default=10.0,
                    help="weight of positive malignant-nodule cells (TB cells weigh 10)")
    ap.add_argument("--sets", default="train-a,train-b,train-c", help="training sets (make_data.sh names)")
    ap.add_argument("--shift", type=int, default=0, help="random shift augmentation, max pixels (0: off)")
    ap.add_argument("--targets", choices=["binary", "soft"], default="binary",
                    help="heatmap cell targets: 1 on every cell a box touches, or the box's share per cell")
    ap.add_argument("--select", choices=["auc", "auc+peak"], default="auc",
                    help="checkpoint kept: best validation mean AUC, or mean of AUCs and peak-in-box shares")
    args = ap.parse_args()

    import common
    common.CENTRE_ONLY = args.nodule_centre_only
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(args.seed)
    OUT.mkdir(parents=True, exist_ok=True)

    sets = [load_set(name) for name in args.sets.split(",")]
    images = [s[0] for s in sets]
    index = [(k, r) for k, s in enumerate(sets) for r in s[1]]
    labels = np.concatenate([s[2] for s in sets])
    boxes = [b for s in sets for b in s[3]]
    if args.limit:
        index, labels, boxes = index[: args.limit], labels[: args.limit], boxes[: args.limit]
    vals = {name: load_set(name) for name in args.val.split(",")}
    print(f"train {len(index)} images, positives {labels.sum(0)}; "
          f"val {', '.join(f'{n} {len(v[1])}' for n, v in vals.items())}", flush=True)

    model = ReferenceNet()
    if args.resume:
        model.load_state_dict(torch.load(args.resume, map_location="cpu"))
    if args.from_onnx:
        load_onnx_weights(model, args.from_onnx)
    freeze_bn = args.freeze_bn or bool(args.from_onnx)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(index) + args.batch - 1) // args.batch)
    if args.warmup > 0:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=args.warmup)
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    pos_weight = torch.tensor([10.0, args.nodule_cell_weight]).view(1, 2, 1, 1)
    log, best = [], (-1.0, None)
    started = time.time()
    for epoch in range(args.stop_after or args.epochs):
        model.train()
        if freeze_bn:
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        order = rng.permutation(len(index))
        total = 0.0
        for b in range(0, len(order), args.batch):
            ids = order[b:b + args.batch]
            x = torch.from_numpy(np.stack([images[index[i][0]][index[i][1]] for i in ids]).astype(np.float32))
            bxs = [boxes[i] for i in ids]
            x = augment(x, rng)
            if args.shift:  # after the grey jitter, so the new borders are black
                x, bxs = shift(x, bxs, args.shift, rng)
            x = x * 2 - 1
            y = torch.from_numpy(labels[ids])
            t = torch.from_numpy(np.stack([cell_targets(b, soft=args.targets == "soft") for b in bxs]))
            scores, maps = model(x)
            loss = F.binary_cross_entropy_with_logits(scores, y)
            # Cells: positives are rare; weight them up.
            weight = torch.where(t < 0, torch.zeros_like(t), 1.0 + (pos_weight - 1.0) * t)
            loss = loss + args.cell_weight * F.binary_cross_entropy_with_logits(maps, t.clamp(min=0), weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(ids)
        entry = {"epoch": epoch + 1, "loss": total / len(order)}
        merits = []
        for name, val in vals.items():
            vs, vm = predict(model, val[0], val[1])
            aucs = [auc(vs[:, k], val[2][:, k]) for k in range(2)]
            hits = [peak_hits(vm, val[3], val[4], k)[0] for k in range(2)]
            suffix = "" if name == "val" else "_" + name.replace("-", "_")
            entry["val_auc" + suffix], entry["val_peak_in_box" + suffix] = aucs, hits
            merits.append(float(np.mean(aucs + hits if args.select == "auc+peak" else aucs)))
        entry["elapsed_s"] = round(time.time() - started, 1)
        log.append(entry)
        print(json.dumps(entry), flush=True)
        merit = float(np.mean(merits))
        if merit > best[0]:
            best = (merit, epoch + 1)
            torch.save(model.state_dict(), OUT / args.out)
    (OUT / "train-log.json").write_text(json.dumps({"args": vars(args), "epochs": log, "best_epoch": best[1]}, indent=1))
    print(f"best epoch {best[1]} (val {args.select} {best[0]:.4f}); {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
