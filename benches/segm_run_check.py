#!/usr/bin/env python3
"""Scores a finished Mask R-CNN run's masks with pycocotools and compares them with kiln's.

    /tmp/cocoenv/bin/python benches/segm_run_check.py \
        data/shapes/annotations/instances_test.json runs/detect-…

reads the run's `mask_detections.json` (COCO segm results) and `mask_metrics.json` (kiln's
`evaluate_coco_masks`), runs pycocotools' `COCOeval(iouType="segm")` on the same files, prints
both sets of 12 numbers and exits non-zero when any differs by more than 1e-4.
"""

import contextlib
import io
import json
import os
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
KEYS = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
        "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large"]


def main():
    instances, run = sys.argv[1], sys.argv[2]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(instances)
        dt = gt.loadRes(os.path.join(run, "mask_detections.json"))
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    with open(os.path.join(run, "mask_metrics.json")) as f:
        kiln = json.load(f)["segm"]["stats"]
    worst = 0.0
    for name, key, theirs in zip(NAMES, KEYS, ev.stats):
        ours = kiln[key]
        worst = max(worst, abs(ours - theirs))
        print(f"{name:6} pycocotools {theirs:.6f}  kiln {ours:.6f}")
    print(f"largest difference {worst:.3g}")
    sys.exit(1 if worst > 1e-4 else 0)


if __name__ == "__main__":
    main()
