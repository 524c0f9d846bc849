#!/usr/bin/env bash
# Test-time speed of trained kiln-detect runs on the same test images, one after the other on
# an otherwise idle machine: each run tested at batch 1 and batch 8 (`kiln-detect test`), then
# all of them plotted as test AP50 against images/s (`kiln-detect compare`).
#
#   benches/detector_speed.sh OUT RUN...
#
# OUT gets speed.md (one row per run and batch) and speed_accuracy.png (batch-1 speeds, plus
# whatever PLOT_ALSO adds, space-separated: finished runs, plotted with the test record their
# training measured — for detectors too slow to test twice, such as R-CNN — or points measured
# elsewhere, `--point LABEL=AP50@IMAGES_PER_SEC`). Set KILN_DETECT to the binary (default:
# target/release/kiln-detect) and DATA to the dataset when the runs' own data path does not
# resolve from here.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 OUT RUN..." >&2
    exit 2
fi
out=$1
shift
bin=${KILN_DETECT:-target/release/kiln-detect}
data_args=()
if [ -n "${DATA:-}" ]; then
    data_args=(--data "$DATA")
fi
mkdir -p "$out"
{
    echo "| run | detector | batch | AP50 | test images/s |"
    echo "|---|---|---|---|---|"
} > "$out/speed.md"
b1_dirs=()
for run in "$@"; do
    for batch in 1 8; do
        dir="$out/$(basename "$run")-b$batch"
        "$bin" test --run "$run" --batch "$batch" --out "$dir" "${data_args[@]}" > "$dir.log" 2>&1 \
            || { echo "testing $run at batch $batch failed: see $dir.log" >&2; exit 1; }
        python3 - "$dir/test_report.json" "$run" "$batch" >> "$out/speed.md" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {r.get('detector') or r['method']} | {sys.argv[3]} | {r['coco']['ap50']:.3f} | {r['images_per_sec']:.2f} |")
PY
    done
    b1_dirs+=("$out/$(basename "$run")-b1")
done
# shellcheck disable=SC2086
"$bin" compare --out "$out/speed_accuracy.png" ${PLOT_ALSO:-} "${b1_dirs[@]}"
cat "$out/speed.md"
