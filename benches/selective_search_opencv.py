#!/usr/bin/env python3
"""OpenCV's selective search ("fast" mode) on a Pascal VOC split: the reference kiln's
`proposals::selective_search` is measured against.

    pip install opencv-contrib-python-headless numpy
    python3 benches/selective_search_opencv.py \
        $KILN_SHARED/datasets/raccoon-voc.tar.gz --split train --out opencv-ss.json

For every image of the split it runs `cv2.ximgproc.segmentation` selective search on one thread
(`cv2.setNumThreads(1)`), on the image resized to a long side of 500 (bilinear), maps the boxes
back to the original image, and records the boxes (best first) and the seconds taken (resize,
colour conversions and search). It then prints the recall table kiln's `proposal_recall` computes:
the fraction of non-difficult ground-truth boxes covered by one of the top-N proposals at IoU >= t.
The JSON it writes (`--out`) holds every image's boxes, so kiln's runner
(`examples/selective_search_recall.rs --opencv FILE`) can score both with the same code.

Measured on the 160 raccoon training images (173 boxes), a shared 2-core machine, this script
then the runner back to back (opencv-contrib-python-headless 5.0.0.93; kiln's defaults, the
paper's fast mode):

                     recall@0.5 top 100/300/1000/2000   recall@0.7 top 100/300/1000/2000
    OpenCV           0.659 0.919 0.988 0.994            0.329 0.555 0.803 0.902
    kiln             0.965 0.988 1.000 1.000            0.780 0.890 0.931 0.942

    median proposals: OpenCV 1,117, kiln 3,086.5
    seconds per image, one thread: OpenCV 1.35, kiln 0.25
"""

import argparse
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET

import cv2
import numpy as np

TOP_NS = [100, 300, 1000, 2000]
IOUS = [0.5, 0.7]


def find_root(path):
    """The folder holding `images/`, `annotations/` and `splits/` (extracting a .tar.gz)."""
    if os.path.isfile(path):
        out = tempfile.mkdtemp(prefix="ss-opencv-")
        with tarfile.open(path) as tar:
            tar.extractall(out, filter="data")
        path = out
    for dirpath, dirnames, _ in os.walk(path):
        if "annotations" in dirnames and "images" in dirnames:
            return dirpath
    sys.exit(f"{path}: no images/ and annotations/ folders found")


def read_voc(xml_path):
    """Non-difficult boxes in continuous pixel coordinates (xmin - 1, ymin - 1, xmax, ymax)."""
    root = ET.parse(xml_path).getroot()
    boxes = []
    for obj in root.iter("object"):
        difficult = obj.find("difficult")
        if difficult is not None and difficult.text and int(difficult.text) != 0:
            continue
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((x1 - 1.0, y1 - 1.0, x2, y2))
    return boxes


def iou_matrix(gt, boxes):
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(gt[:, None, 0], boxes[None, :, 0])
    iy1 = np.maximum(gt[:, None, 1], boxes[None, :, 1])
    ix2 = np.minimum(gt[:, None, 2], boxes[None, :, 2])
    iy2 = np.minimum(gt[:, None, 3], boxes[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area(gt)[:, None] + area(boxes)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def recall_table(gts, proposals):
    """recall[t][n]: share of gt boxes with IoU >= t to one of the first n proposals."""
    table = {}
    total = sum(len(g) for g in gts)
    for t in IOUS:
        row = []
        for n in TOP_NS:
            hit = 0
            for g, p in zip(gts, proposals):
                if g and p:
                    hit += int((iou_matrix(g, p[:n]).max(axis=1) >= t).sum())
            row.append(hit / max(total, 1))
        table[str(t)] = row
    return table


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", help="raccoon-voc.tar.gz or the folder it extracts to")
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    ap.add_argument("--long-side", type=int, default=500)
    ap.add_argument("--out", help="write per-image boxes, seconds and the table here (JSON)")
    args = ap.parse_args()

    cv2.setNumThreads(1)
    root = find_root(args.dataset)
    with open(os.path.join(root, "splits", f"{args.split}.txt")) as f:
        names = [line.strip() for line in f if line.strip()]
    if args.limit:
        names = names[: args.limit]

    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    images, gts, proposals = [], [], []
    for i, name in enumerate(names):
        img = cv2.imread(os.path.join(root, "images", name))
        h, w = img.shape[:2]
        stem = os.path.splitext(name)[0]
        gt = read_voc(os.path.join(root, "annotations", stem + ".xml"))
        start = time.perf_counter()
        scale = args.long_side / max(h, w)
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        small = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_LINEAR)
        ss.setBaseImage(small)
        ss.switchToSelectiveSearchFast()
        rects = ss.process()
        seconds = time.perf_counter() - start
        sx, sy = w / rw, h / rh
        boxes = [
            [float(x) * sx, float(y) * sy, float(x + bw) * sx, float(y + bh) * sy]
            for (x, y, bw, bh) in np.asarray(rects).reshape(-1, 4).tolist()
        ]
        images.append({"file": name, "width": w, "height": h, "seconds": seconds, "boxes": boxes})
        gts.append(gt)
        proposals.append(boxes)
        print(f"[{i + 1}/{len(names)}] {name}: {len(boxes)} boxes, {seconds:.2f} s", file=sys.stderr)

    summary = {
        "implementation": f"opencv {cv2.__version__} ximgproc selective search fast, 1 thread",
        "images": len(images),
        "gt_boxes": sum(len(g) for g in gts),
        "top_ns": TOP_NS,
        "iou_thresholds": IOUS,
        "recall": recall_table(gts, proposals),
        "median_proposals": statistics.median(len(p) for p in proposals),
        "seconds_per_image": sum(im["seconds"] for im in images) / max(len(images), 1),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            json.dump({"summary": summary, "per_image": images}, f)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
