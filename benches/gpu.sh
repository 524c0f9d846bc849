#!/usr/bin/env bash
# kiln's GPU numbers in one run, for a lent H100/H200 (or any Vulkan GPU), each stage under its
# own time limit and all of them under GPU_BUDGET seconds, so a slow stage cannot cost the rest:
#   bench   training throughput of the benchmark and airbench nets beside PyTorch's anchor
#           (benches/bench_net_torch.py, CUDA), in f32 and half precision, with the loss read
#           every step or every N steps;
#   yolo    `kiln-detect test` of a trained YOLO run (YOLO_RUN) at batch 1 and 32;
#   recipe  the airbench94 recipe (configs/cifar10-airbench.toml) end to end on the JPEG
#           CIFAR-10, at RECIPE_PRECISION (default f16-mixed);
#   faster  two epochs of configs/raccoon-faster-rcnn.toml, then its test split;
#   fcn     the three CamVid FCNs trained one from the other.
# Writes `table.md`, `log.txt` and the runs' metrics.jsonl into OUT.
#
#   cargo build --release --features wgpu --bin kiln-cnn --bin kiln-detect --bin kiln-segment
#   KILN_SHARED=/path/to/shared benches/gpu.sh target/release OUT_DIR
#
# KILN_SHARED must hold the datasets the stages use (datasets/cifar10-jpg.tar.gz for recipe,
# raccoon-voc.tar.gz for yolo and faster, camvid.tar.gz for fcn) and, for faster and fcn, the
# EfficientNet-Lite0 weights (pretrained/). Each kiln binary runs with --device wgpu (KILN_DEVICE
# overrides it, e.g. `vulkan` with a `--features vulkan` build; TORCH_DEVICE the anchor's, default
# cuda); on a GPU the first steps of a process
# compile kernels. BENCH_ROWS lists the bench rows as NET:BATCHES:PRECISION:READ_EVERY (default
# "benchmark:128,1024:f32:1 benchmark:128,1024:f16-mixed:1 benchmark:128,1024:f16:1
# airbench:1024:f32:1 airbench:1024:f16-mixed:1"). Limits (seconds) can be changed: GPU_BUDGET (default 540), BENCH_LIMIT,
# TORCH_LIMIT, YOLO_LIMIT, RECIPE_LIMIT, FASTER_LIMIT, FCN32_LIMIT, FCN16_LIMIT, FCN8_LIMIT;
# GPU_STAGES picks and orders the parts (default "bench yolo recipe").
set -uo pipefail
BIN=$(realpath "$1")
OUT=$(realpath -m "$2")
mkdir -p "$OUT"
WORK=$(mktemp -d)
export KILN_DATA="$WORK/cache"
SHARED=${KILN_SHARED:?set KILN_SHARED to the shared data folder}
DEVICE=${KILN_DEVICE:-wgpu}
STARTED=$(date +%s)
BUDGET=${GPU_BUDGET:-540}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
TABLE="$OUT/table.md"
LOG="$OUT/log.txt"
: > "$LOG"
note() { echo "$*" | tee -a "$TABLE"; }
stage() {  # stage LIMIT NAME COMMAND...: runs a command under a time limit, logging it
    local limit=$1 name=$2; shift 2
    local start=$(date +%s)
    local left=$(( STARTED + BUDGET - start ))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -le 5 ]; then
        echo "== $name: skipped, the budget of ${BUDGET}s is spent" >> "$LOG"
        printf '%s|skipped|0\n' "$name" >> "$WORK/stages"
        return 124
    fi
    echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" >> "$LOG"
    timeout "$limit" "$@" > "$WORK/$name.out" 2>&1
    local rc=$?
    cat "$WORK/$name.out" >> "$LOG"
    local took=$(( $(date +%s) - start ))
    echo "== $name: exit $rc after ${took}s" >> "$LOG"
    printf '%s|%s|%.0f\n' "$name" "$rc" "$took" >> "$WORK/stages"
    return $rc
}
: > "$TABLE"
note "# kiln GPU run, $(date -u +%Y-%m-%d)"
note ""
note "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
note ""

# Training throughput (random 32x32 inputs), kiln beside PyTorch on CUDA: one kiln process per
# net and setting (batches timed one after the other, so kernels compile once per process).
images_per_sec() {  # images_per_sec NAME BATCH: the rate a stage's output gives for a batch
    grep "batch $2[,:]" "$WORK/$1.out" | grep -o "[0-9]* training images/s" | cut -d' ' -f1
}
bench_rows() {
note "## Training images/s, random 32×32 inputs (\`kiln-cnn bench\`, \`benches/bench_net_torch.py\`)"
note ""
note "PyTorch's half precision is \`torch.autocast\` (f32 master weights; f16 with a \`GradScaler\`). kiln's f16-mixed is the same; its f16 is every tensor in half, against PyTorch's bf16 autocast."
note ""
note "| network, batch | precision | loss read every | PyTorch (CUDA) | kiln ($DEVICE) | ratio |"
note "|---|---|---|---|---|---|"
local rows=${BENCH_ROWS:-"benchmark:128,1024:f32:1 benchmark:128,1024:f16-mixed:1 benchmark:128,1024:f16:1 airbench:1024:f32:1 airbench:1024:f16-mixed:1"}
for spec in $rows; do
    spec=${spec//:/ }
    set -- $spec
    local net=$1 batches=$2 precision=$3 every=$4
    local name="bench-$net-$precision-$every"
    stage "${BENCH_LIMIT:-100}" "$name" "$BIN/kiln-cnn" bench --net "$net" --batch "$batches" \
        --steps 30 --warmup 10 --device "$DEVICE" --precision "$precision" --read-every "$every"
    if [ $? -ne 0 ] && [ "$DEVICE" = vulkan ] && ! grep -q "training images/s" "$WORK/$name.out"; then
        # Without a working Vulkan SPIR-V path the rest of the run takes wgpu's own choice.
        note "(\`--device vulkan\` gave no number, see log.txt; the rows below from here are \`--device wgpu\`)"
        DEVICE=wgpu
        stage "${BENCH_LIMIT:-100}" "$name" "$BIN/kiln-cnn" bench --net "$net" --batch "$batches" \
            --steps 30 --warmup 10 --device "$DEVICE" --precision "$precision" --read-every "$every"
    fi
    for batch in ${batches//,/ }; do
        local kiln torch=- torch_precision=$precision
        kiln=$(images_per_sec "$name" "$batch")
        # PyTorch's half rows are autocast: f16-mixed against f16 with a GradScaler, kiln's
        # all-half f16 against bf16 (no loss scaling, as kiln's f16 has none).
        case $precision in
            f16) torch_precision=bf16 ;;
            f16-mixed) torch_precision=f16 ;;
            bf16-mixed) torch_precision=bf16 ;;
        esac
        if [ "$net" = benchmark ]; then
            local tname="torch-$net-$batch-$torch_precision-$every"
            stage "${TORCH_LIMIT:-60}" "$tname" python3 "$(dirname "$0")/bench_net_torch.py" \
                --device "$TORCH_DEVICE" --batch "$batch" --steps 50 --warmup 10 \
                --precision "$torch_precision" --read-every "$every"
            torch=$(images_per_sec "$tname" "$batch")
        fi
        local ratio
        ratio=$(python3 -c "print(f'{$kiln/$torch:.2f}×')" 2>/dev/null || echo -)
        local shown=$precision
        [ "$net" = benchmark ] && [ "$torch_precision" != "$precision" ] && shown="$precision (PyTorch $torch_precision)"
        note "| $net, $batch | $shown | $every | ${torch:--} | ${kiln:--} | $ratio |"
    done
done
note ""
}

# A trained YOLO run's test split at batch 1 and 32: the detection issue's GPU rows.
yolo() {
local run=${YOLO_RUN:-}
if [ -z "$run" ]; then
    note "(yolo skipped: set YOLO_RUN to a trained kiln-detect YOLO run directory)"
    note ""
    return
fi
note "## YOLO test images/s (\`kiln-detect test --run $(basename "$run") --batch N\`)"
note ""
note "| batch | test images/s | AP50 |"
note "|---|---|---|"
for batch in 1 32; do
    stage "${YOLO_LIMIT:-100}" "yolo-b$batch" "$BIN/kiln-detect" test --run "$run" --batch "$batch" \
        --data "$SHARED/datasets/raccoon-voc.tar.gz" --device "$DEVICE" --out "$WORK/yolo-b$batch"
    python3 - "$WORK/yolo-b$batch/test_report.json" "$batch" >> "$TABLE" <<'PY'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
    print(f"| {sys.argv[2]} | {r['images_per_sec']:.2f} | {r['coco']['ap50']:.3f} |")
except (OSError, KeyError):
    print(f"| {sys.argv[2]} | - | - |")
PY
done
note ""
}

# A training run's metrics.jsonl as table lines: each epoch's rate and validation scores, then
# the test scores (a `test_*` field or a `test` object).
run_summary() {
python3 - "$1" >> "$TABLE" <<'PY'
import json, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1])]
except OSError:
    print("no metrics: the run did not finish its first epoch (see log.txt)"); sys.exit()
number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
for r in rows:
    if "epoch" in r:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k.startswith("val_") and number(v))
        print(f"- epoch {r['epoch']}: {r.get('images_per_sec', 0):.1f} training images/s, {scores}")
        continue
    test = r.get("test", r)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in test.items()
                       if number(v) and (k.startswith("test_") or k in ("images_per_sec", "voc_ap50")))
    if scores:
        print(f"- test: {scores}")
PY
}

# The airbench94 recipe end to end on the JPEG CIFAR-10 (decoding and all), one process.
recipe() {
local precision=${RECIPE_PRECISION:-f16-mixed}
stage "${RECIPE_LIMIT:-300}" recipe "$BIN/kiln-cnn" --config "$REPO/configs/cifar10-airbench.toml" \
    --data "$SHARED/datasets/cifar10-jpg.tar.gz" --device "$DEVICE" --precision "$precision" \
    --out "$WORK/recipe"
cp "$WORK/recipe/metrics.jsonl" "$OUT/recipe-metrics.jsonl" 2>/dev/null
local took
took=$(grep "^recipe|" "$WORK/stages" | cut -d'|' -f3)
note "## airbench94 recipe (\`configs/cifar10-airbench.toml\`, --precision $precision), ${took} s wall"
note ""
run_summary "$WORK/recipe/metrics.jsonl"
note ""
}

# Faster R-CNN on the raccoon set: two epochs (the first compiles kernels), then the test split.
faster_rcnn() {
stage "${FASTER_LIMIT:-240}" faster-rcnn "$BIN/kiln-detect" train --config "$REPO/configs/raccoon-faster-rcnn.toml" \
    --data "$SHARED/datasets/raccoon-voc.tar.gz" --device "$DEVICE" --epochs 2 --out "$WORK/faster"
cp "$WORK/faster/metrics.jsonl" "$OUT/faster-rcnn-metrics.jsonl" 2>/dev/null
note "## Faster R-CNN (\`configs/raccoon-faster-rcnn.toml\`, 2 epochs)"
note ""
run_summary "$WORK/faster/metrics.jsonl"
note ""
}

# FCN-32s -> 16s -> 8s on CamVid, each from the last.
fcn() {
note "## FCN on CamVid (\`configs/camvid-fcn{32s,16s,8s}.toml\`, each from the previous)"
note ""
note "| model | epochs done | seconds | training images/s (last epoch) | val mIoU (best epoch) | val mIoU (final scoring) |"
note "|---|---|---|---|---|---|"
prev=""
for v in 32s 16s 8s; do
    limit_var="FCN${v%s}_LIMIT"
    default=$([ "$v" = 32s ] && echo 240 || echo 150)
    init=()
    [ -n "$prev" ] && init=(--init "$prev")
    stage "${!limit_var:-$default}" "fcn$v" "$BIN/kiln-segment" train --config "$REPO/configs/camvid-fcn$v.toml" \
        --data "$SHARED/datasets/camvid.tar.gz" --device "$DEVICE" --out "$WORK/fcn$v" "${init[@]}"
    cp "$WORK/fcn$v/metrics.jsonl" "$OUT/fcn$v-metrics.jsonl" 2>/dev/null
    took=$(grep "^fcn$v|" "$WORK/stages" | cut -d'|' -f3)
    python3 - "$WORK/fcn$v" "$v" "$took" >> "$TABLE" <<'PY'
import json, os, sys
run, v, took = sys.argv[1:]
rows = []
try:
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
except OSError:
    pass
epochs = [r for r in rows if "epoch" in r]
best = max((r.get("val_miou", 0) for r in epochs), default=0)
rate = epochs[-1].get("images_per_sec", 0) if epochs else 0
final = "-"
try:
    final = f"{100 * json.load(open(os.path.join(run, 'metrics.json')))['metrics']['mean_iou']:.2f} %"
except (OSError, KeyError):
    pass
print(f"| FCN-{v} | {len(epochs)} | {took} | {rate:.1f} | {100 * best:.2f} % | {final} |")
PY
    if [ -f "$WORK/fcn$v/checkpoints/best.bpk" ]; then prev="$WORK/fcn$v"; else break; fi
done
[ -f "$WORK/fcn8s/predictions.png" ] && cp "$WORK/fcn8s/predictions.png" "$OUT/fcn8s-predictions.png"
note ""
}

REPO=$(cd "$(dirname "$0")/.." && pwd)
for part in ${GPU_STAGES:-bench yolo recipe}; do
    case $part in
        bench) bench_rows ;;
        yolo) yolo ;;
        recipe) recipe ;;
        faster) faster_rcnn ;;
        fcn) fcn ;;
        *) echo "unknown stage $part (bench, yolo, recipe, faster, fcn)" >&2 ;;
    esac
done
note "Stage wall times (seconds, exit status): $(tr '\n' ' ' < "$WORK/stages")"
rm -rf "$WORK"
