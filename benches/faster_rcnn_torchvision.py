#!/usr/bin/env python3
"""torchvision's Faster R-CNN on the ImageNet EfficientNet-Lite0, trained and scored on the
raccoon set: the PyTorch anchor kiln's Faster R-CNN is measured against.

    python3 -m venv /tmp/frcnn-env
    /tmp/frcnn-env/bin/pip install torch torchvision efficientnet-lite-pytorch pycocotools
    /tmp/frcnn-env/bin/python benches/faster_rcnn_torchvision.py --out torchvision-frcnn.json

The backbone is `efficientnet_lite_pytorch.EfficientNet.from_name('efficientnet-lite0')` (built
with dynamic TensorFlow-"same" padding, so any input size works) with the shared ImageNet weights
(`$KILN_SHARED/pretrained/efficientnet-lite0-57934424.pth`, whose names are the package's own; all
are loaded strictly), cut after its 1×1 conv head: one stride-32 map of 1,280 channels. It trains
as the package builds it (batch norm in training mode, drop-connect 0.2). Around it torchvision's
`FasterRCNN` with its defaults except: one anchor level of sizes 64-512 × ratios 0.5/1/2, RoIAlign
7×7 with sampling ratio 2, images resized to a short side of 416 (long side at most 640), two
classes (background, raccoon). Training: the 160 images of `splits/train.txt`, random horizontal
flips, batch 4, SGD (lr 0.01, momentum 0.9 held fixed, weight decay 1e-4 on every weight) under
`OneCycleLR` over all steps, 30 epochs. Then the 40 images of `splits/test.txt` are detected one
at a time and scored with pycocotools (COCO AP and AP50, image ids and category id as kiln numbers
them: images from 1 in sorted annotation order, raccoon = 1), so `--out` can be read next to
kiln's `detections.json`.

It prints each epoch's seconds and training images/s, detection images/s, and the peak RSS.
`--max-iters N` stops every epoch after N batches (for timing; the schedule is sized to match).
Boxes are VOC's 1-based pixels made continuous as kiln does: (xmin - 1, ymin - 1, xmax, ymax).
"""

import argparse
import contextlib
import copy
import io
import json
import math
import os
import random
import resource
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

SHARED = os.environ.get("KILN_SHARED", "/work/shared")


def find_root(path):
    """The folder holding `images/`, `annotations/` and `splits/`."""
    for dirpath, dirnames, _ in os.walk(path):
        if "annotations" in dirnames and "images" in dirnames:
            return dirpath
    sys.exit(f"{path}: no images/ and annotations/ folders found")


def read_voc(xml_path):
    """Boxes in continuous pixel coordinates (xmin - 1, ymin - 1, xmax, ymax), difficult flags."""
    root = ET.parse(xml_path).getroot()
    boxes, difficult = [], []
    for obj in root.iter("object"):
        d = obj.find("difficult")
        difficult.append(d is not None and bool(d.text) and int(d.text) != 0)
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((x1 - 1.0, y1 - 1.0, x2, y2))
    return boxes, difficult


def load_split(root, split):
    """Decoded images (uint8 CHW tensors), boxes, difficult flags and kiln's image ids."""
    xmls = sorted(f for f in os.listdir(os.path.join(root, "annotations")) if f.endswith(".xml"))
    ids = {x[:-4]: i + 1 for i, x in enumerate(xmls)}  # kiln: from 1, sorted annotation files
    with open(os.path.join(root, "splits", f"{split}.txt")) as f:
        names = [line.strip() for line in f if line.strip()]
    items = []
    for name in names:
        stem = os.path.splitext(os.path.basename(name))[0]
        boxes, difficult = read_voc(os.path.join(root, "annotations", stem + ".xml"))
        image = np.asarray(Image.open(os.path.join(root, "images", stem + ".jpg")).convert("RGB"))
        items.append({"id": ids[stem], "image": torch.from_numpy(image.copy()).permute(2, 0, 1),
                      "boxes": boxes, "difficult": difficult})
    return items


class Lite0Features(nn.Module):
    """EfficientNet-Lite0 up to its conv head (conv 1×1 + BN + ReLU6): stride 32, 1,280 channels."""

    def __init__(self, weights):
        super().__init__()
        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        # The file uses the package's names; strict loading asserts every key matches.
        self.net.load_state_dict(state, strict=True)
        self.net._fc = nn.Identity()  # the classifier is not used
        self.out_channels = 1280

    def forward(self, x):
        return self.net.extract_features(x)


def build_model(weights):
    anchors = AnchorGenerator(sizes=((64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    roi_pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    return FasterRCNN(Lite0Features(weights), num_classes=2, min_size=416, max_size=640,
                      rpn_anchor_generator=anchors, box_roi_pool=roi_pool)


def train_target(item, flip):
    """Image in [0, 1] and target; difficult objects are left out of training."""
    image = item["image"].float() / 255.0
    boxes = torch.tensor([b for b, d in zip(item["boxes"], item["difficult"]) if not d],
                         dtype=torch.float32).reshape(-1, 4)
    if flip:
        width = image.shape[-1]
        image = image.flip(-1)
        boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    return image, {"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}


def coco_scores(items, results):
    """COCO summary numbers (pycocotools, iouType bbox) of `results` against the items' boxes."""
    images, anns = [], []
    for item in items:
        h, w = item["image"].shape[1:]
        images.append({"id": item["id"], "width": int(w), "height": int(h)})
        for (x1, y1, x2, y2), d in zip(item["boxes"], item["difficult"]):
            # pycocotools has no "difficult"; a crowd region is ignored the same way when matched.
            anns.append({"id": len(anns) + 1, "image_id": item["id"], "category_id": 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": int(d)})
    if not results:  # loadRes cannot read an empty list
        return [0.0] * 12
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "raccoon"}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "bbox")  # loadRes edits its input
        ev.evaluate()
        ev.accumulate()
    ev.summarize()
    return [float(v) for v in ev.stats]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(SHARED, "datasets", "raccoon-voc.tar.gz"),
                    help="raccoon-voc.tar.gz or the folder it extracts to")
    ap.add_argument("--weights", default=os.path.join(SHARED, "pretrained", "efficientnet-lite0-57934424.pth"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--max-iters", type=int, default=0, help="stop each epoch after N batches (0: all)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=10, help="print the loss every N batches")
    ap.add_argument("--out", help="write the test detections here (COCO results JSON)")
    ap.add_argument("--skip-eval", action="store_true", help="train only (for timing)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    print(f"torch {torch.__version__}, torchvision {__import__('torchvision').__version__}, "
          f"{args.threads} threads", file=sys.stderr)

    # Images are decoded once into memory; an archive is extracted to a temporary folder.
    with tempfile.TemporaryDirectory(prefix="frcnn-torchvision-") as tmp:
        path = args.data
        if os.path.isfile(path):
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter="data")
            path = tmp
        root = find_root(path)
        train, test = load_split(root, "train"), load_split(root, "test")
    print(f"{len(train)} training and {len(test)} test images", file=sys.stderr)

    model = build_model(args.weights)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    steps = math.ceil(len(train) / args.batch)
    if args.max_iters:
        steps = min(steps, args.max_iters)
    # One cycle over the whole run (PyTorch's defaults: 30 % warm-up, cosine); momentum stays 0.9.
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.01, total_steps=args.epochs * steps, cycle_momentum=False)

    for epoch in range(args.epochs):
        model.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        start, seen = time.perf_counter(), 0
        for it in range(steps):
            batch = [train_target(train[k], rng.random() < 0.5)
                     for k in order[it * args.batch:(it + 1) * args.batch]]
            losses = model([b[0] for b in batch], [b[1] for b in batch])
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(batch)
            if (it + 1) % args.log_every == 0 or it + 1 == steps:
                parts = " ".join(f"{k[5:] if k.startswith('loss_') else k} {v.item():.4f}"
                                 for k, v in losses.items())
                print(f"epoch {epoch + 1} batch {it + 1}/{steps}: loss {loss.item():.4f} ({parts}), "
                      f"{(time.perf_counter() - start) / (it + 1):.2f} s/batch", file=sys.stderr)
        seconds = time.perf_counter() - start
        print(f"epoch {epoch + 1}/{args.epochs}: {seconds:.1f} s, {seen / seconds:.2f} training images/s")

    if args.skip_eval:
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        return
    # Detection on the test split, one image at a time (boxes come back in original pixels).
    model.eval()
    results, start = [], time.perf_counter()
    with torch.no_grad():
        for item in test:
            out = model([item["image"].float() / 255.0])[0]
            for (x1, y1, x2, y2), score in zip(out["boxes"].tolist(), out["scores"].tolist()):
                results.append({"image_id": item["id"], "category_id": 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    seconds = time.perf_counter() - start
    print(f"detection: {len(test)} images in {seconds:.1f} s, {len(test) / seconds:.2f} images/s, "
          f"{len(results)} boxes")
    stats = coco_scores(test, results)
    print(f"test AP {stats[0]:.3f}, AP50 {stats[1]:.3f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            json.dump(results, f)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
