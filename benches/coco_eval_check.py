#!/usr/bin/env python3
"""Cross-checks kiln's COCO evaluator against pycocotools' COCOeval (iouType='bbox' or 'segm').

Generates random ground-truth/detection sets (several categories, images with and without
objects, small/medium/large objects including boxes exactly at the 32² and 96² area bounds,
crowd regions, overlapping boxes, tied scores, images with more than 100 detections), writes
each as a COCO instances file and a COCO results file, evaluates them with pycocotools and with
kiln (the `coco_eval` example of kiln-detect), and reports the largest absolute difference over
the 12 summary numbers.

With `--iou-type segm` every object and detection also gets a mask: ground truths a random
polygon inside their box (crowd regions an uncompressed RLE), detections the compressed RLE of a
jittered polygon (in some cases without their `bbox`, so areas come from the masks), and both
evaluators compare masks.

    python3 -m venv /tmp/cocoenv && /tmp/cocoenv/bin/pip install pycocotools numpy
    /tmp/cocoenv/bin/python benches/coco_eval_check.py --cases 250
    /tmp/cocoenv/bin/python benches/coco_eval_check.py --cases 150 --iou-type segm

Run from the workspace root; it builds the example with `cargo build --release` unless
`--kiln-bin` names an already-built binary. Exits non-zero when a case differs by more than
`--tolerance` (1e-4), and keeps the files of each such case in `--keep` for investigation.
"""

import argparse
import contextlib
import copy
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

NAMES = [
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
]


def coord(rng, v, grid):
    """A coordinate: integer on grid cases (so IoU and area ties are exact), else 2 decimals."""
    return float(round(v)) if grid else round(v, 2)


def random_size(rng, grid):
    """Width and height of a small, medium or large object, sometimes exactly on a bound."""
    kind = rng.random()
    if grid and kind < 0.08:
        side = rng.choice([32, 96])
        return side, side
    if kind < 0.4:
        lo, hi = 3, 31
    elif kind < 0.75:
        lo, hi = 32, 95
    else:
        lo, hi = 96, 260
    w = rng.uniform(lo, hi) * rng.uniform(0.7, 1.3)
    h = rng.uniform(lo, hi) * rng.uniform(0.7, 1.3)
    return max(w, 2.0), max(h, 2.0)


def clip_box(x, y, w, h, width, height):
    x = min(max(x, 0.0), width - 2.0)
    y = min(max(y, 0.0), height - 2.0)
    w = min(w, width - x)
    h = min(h, height - y)
    return x, y, w, h


def make_case(rng, case):
    grid = rng.random() < 0.5
    n_images = rng.randint(1, 10)
    n_cats = rng.randint(1, 5)
    cat_ids = sorted(rng.sample(range(1, 40), n_cats))
    images, anns, dets = [], [], []
    image_ids = rng.sample(range(1, 10_000), n_images)
    score_decimals = rng.choice([1, 2, 3])  # 1 decimal → many ties
    ann_id = 1
    for image_id in image_ids:
        width, height = rng.randint(200, 700), rng.randint(200, 700)
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height})
        empty = rng.random() < 0.15
        for cat in cat_ids:
            n_obj = 0 if empty else rng.choice([0, 0, 1, 1, 2, 3, 4, 6])
            gts = []
            for _ in range(n_obj):
                w, h = random_size(rng, grid)
                crowd = rng.random() < 0.07
                if crowd:
                    w, h = w * 2.0, h * 2.0
                x = rng.uniform(0, width - 4)
                y = rng.uniform(0, height - 4)
                # Sometimes stack a box on the previous one, for overlapping objects.
                if gts and rng.random() < 0.3:
                    px, py, pw, ph = gts[-1]
                    x, y = px + rng.uniform(-0.3, 0.3) * pw, py + rng.uniform(-0.3, 0.3) * ph
                x, y, w, h = (coord(rng, v, grid) for v in (x, y, w, h))
                x, y, w, h = clip_box(x, y, w, h, width, height)
                x, y, w, h = (coord(rng, v, grid) for v in (x, y, w, h))
                if w <= 0 or h <= 0:
                    continue
                # COCO's area is the segmentation's; make it differ from the box's at times.
                area = w * h
                if rng.random() < 0.3:
                    area = round(area * rng.uniform(0.4, 1.0), 2 if not grid else 0)
                anns.append({
                    "id": ann_id, "image_id": image_id, "category_id": cat,
                    "bbox": [x, y, w, h], "area": float(area), "iscrowd": int(crowd),
                })
                ann_id += 1
                gts.append((x, y, w, h))
            # Detections: jittered copies of the objects (some near, some far) …
            for (x, y, w, h) in gts:
                for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
                    s = rng.choice([0.02, 0.05, 0.1, 0.2, 0.4])
                    dx, dy = rng.gauss(0, s) * w, rng.gauss(0, s) * h
                    dw, dh = w * np.exp(rng.gauss(0, s)), h * np.exp(rng.gauss(0, s))
                    if grid and rng.random() < 0.3:
                        dx, dy, dw, dh = 0.0, 0.0, w, h * rng.choice([0.5, 0.55, 0.75, 0.8, 0.9, 1.0])
                    box = [coord(rng, v, grid) for v in (x + dx, y + dy, max(dw, 1.0), max(dh, 1.0))]
                    dets.append((image_id, cat, box))
            # … and false positives, sometimes many (beyond the 100-per-image cut).
            n_fp = rng.choice([0, 0, 1, 2, 4]) if rng.random() > 0.04 else rng.randint(100, 130)
            for _ in range(n_fp):
                w, h = random_size(rng, grid)
                box = [coord(rng, v, grid) for v in (rng.uniform(0, width - 4), rng.uniform(0, height - 4), w, h)]
                dets.append((image_id, cat, box))
    if not dets:  # pycocotools' loadRes cannot read an empty list
        dets.append((image_ids[0], cat_ids[0], [0.0, 0.0, 10.0, 10.0]))
    rng.shuffle(dets)
    results = []
    for image_id, cat, box in dets:
        score = round(rng.random(), score_decimals)
        results.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": score})
    # Sometimes a category with no objects at all, still listed.
    cats = [{"id": c, "name": f"c{c}"} for c in cat_ids]
    if rng.random() < 0.2:
        cats.append({"id": 99, "name": "unused"})
    instances = {"images": images, "annotations": anns, "categories": cats}
    return instances, results


def polygon_in_box(rng, box):
    """A star-shaped polygon of 3–10 vertices inside (and sometimes over the edge of) a box."""
    x, y, w, h = box
    n = rng.randint(3, 10)
    points = []
    for i in range(n):
        a = 2 * np.pi * i / n + rng.uniform(-0.3, 0.3)
        r = rng.uniform(0.4, 1.1)
        points += [round(x + w / 2 + r * w / 2 * np.cos(a), 2), round(y + h / 2 + r * h / 2 * np.sin(a), 2)]
    return points


def rle_of(polygons, height, width):
    return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))


def add_masks(rng, instances, results):
    """Gives every annotation and detection a mask (see the module docstring)."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in instances["images"]}
    for ann in instances["annotations"]:
        h, w = sizes[ann["image_id"]]
        polygons = [polygon_in_box(rng, ann["bbox"])]
        if rng.random() < 0.15:
            polygons.append(polygon_in_box(rng, ann["bbox"]))
        if ann["iscrowd"]:
            m = mask_utils.decode(rle_of(polygons, h, w)).flatten(order="F")
            change = np.flatnonzero(np.diff(m)) + 1
            bounds = np.concatenate([[0], change, [len(m)]])
            counts = np.diff(bounds).tolist()
            if m[0] == 1:
                counts = [0] + counts
            ann["segmentation"] = {"size": [h, w], "counts": counts}
        else:
            ann["segmentation"] = polygons
        if rng.random() < 0.5:  # COCO's area is the mask's; sometimes it is not
            ann["area"] = float(mask_utils.area(rle_of(polygons, h, w)))
    drop_boxes = rng.random() < 0.3
    for r in results:
        h, w = sizes[r["image_id"]]
        rle = rle_of([polygon_in_box(rng, r["bbox"])], h, w)
        r["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        if drop_boxes:
            del r["bbox"]


def pycocotools_stats(instances, results, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(instances)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=250)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--kiln-bin", help="the built coco_eval example (default: build it with cargo)")
    ap.add_argument("--keep", default="coco_eval_check_failures", help="folder for differing cases")
    ap.add_argument("--iou-type", choices=["bbox", "segm"], default="bbox")
    args = ap.parse_args()

    binary = args.kiln_bin
    if binary is None:
        subprocess.run(
            ["cargo", "build", "--release", "-p", "kiln-detect", "--example", "coco_eval"],
            check=True,
        )
        target = os.environ.get("CARGO_TARGET_DIR", "target")
        binary = os.path.join(target, "release", "examples", "coco_eval")

    rng = random.Random(args.seed)
    worst, worst_case, failures = 0.0, None, 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in range(args.cases):
            instances, results = make_case(rng, case)
            if args.iou_type == "segm":
                add_masks(rng, instances, results)
            inst_path = os.path.join(tmp, "instances.json")
            res_path = os.path.join(tmp, "results.json")
            with open(inst_path, "w") as f:
                json.dump(instances, f)
            with open(res_path, "w") as f:
                json.dump(results, f)
            expected = pycocotools_stats(instances, results, args.iou_type)
            out = subprocess.run([binary, inst_path, res_path, args.iou_type], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"case {case}: kiln failed: {out.stderr.strip()}", file=sys.stderr)
                got = [float("nan")] * 12
            else:
                got = json.loads(out.stdout)
            diffs = [abs(a - b) if not (np.isnan(a) or np.isnan(b)) else float("inf") for a, b in zip(expected, got)]
            d = max(diffs)
            if d > worst:
                worst, worst_case = d, case
            if d > args.tolerance:
                failures += 1
                keep = os.path.join(args.keep, f"case{case}")
                os.makedirs(keep, exist_ok=True)
                shutil.copy(inst_path, keep)
                shutil.copy(res_path, keep)
                bad = [f"{NAMES[i]}: pycocotools {expected[i]:.6f} kiln {got[i]:.6f}" for i in range(12) if diffs[i] > args.tolerance]
                print(f"case {case} differs ({len(results)} detections; files in {keep}): " + "; ".join(bad))
    print(f"{args.cases} cases, max |pycocotools - kiln| = {worst:.3g} (case {worst_case}), "
          f"{failures} over {args.tolerance:g}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
