#!/usr/bin/env bash
# kiln's GPU numbers in one run, for a lent H100/H200 (or any Vulkan GPU): training throughput of
# the benchmark and airbench nets beside PyTorch's anchor (benches/bench_net_torch.py, CUDA), the
# Faster R-CNN config's epoch time, and the three CamVid FCNs trained one from the other, each
# stage under its own time limit so a slow stage cannot cost the rest. Writes `table.md` and the
# runs' metrics.jsonl (the FCNs' last line holds the final per-class scores) into OUT.
#
#   cargo build --release --features wgpu --bin kiln-cnn --bin kiln-detect --bin kiln-segment
#   KILN_SHARED=/path/to/shared benches/gpu.sh target/release OUT_DIR
#
# KILN_SHARED must hold datasets/{raccoon-voc,camvid}.tar.gz and the EfficientNet-Lite0 weights
# (pretrained/). Each kiln binary runs with --device wgpu (KILN_DEVICE overrides it, TORCH_DEVICE the
# anchor's, default cuda); on a GPU the first steps compile kernels.
# Limits (seconds) can be changed: BENCH_LIMIT, TORCH_LIMIT, FASTER_LIMIT, FCN32_LIMIT,
# FCN16_LIMIT, FCN8_LIMIT; GPU_STAGES picks and orders the parts (default "bench faster fcn").
set -uo pipefail
BIN=$(realpath "$1")
OUT=$(realpath -m "$2")
mkdir -p "$OUT"
WORK=$(mktemp -d)
export KILN_DATA="$WORK/cache"
SHARED=${KILN_SHARED:?set KILN_SHARED to the shared data folder}
DEVICE=${KILN_DEVICE:-wgpu}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
TABLE="$OUT/table.md"
LOG="$OUT/log.txt"
: > "$LOG"
note() { echo "$*" | tee -a "$TABLE"; }
stage() {  # stage LIMIT NAME COMMAND...: runs a command under a time limit, logging it
    local limit=$1 name=$2; shift 2
    local start=$(date +%s)
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

# Training throughput (random 32x32 inputs), kiln on wgpu beside PyTorch on CUDA.
bench_rows() {
note "## Training images/s, random 32×32 inputs (\`kiln-cnn bench\`, \`benches/bench_net_torch.py\`)"
note ""
note "| network, batch | PyTorch (CUDA) | kiln (wgpu) | ratio |"
note "|---|---|---|---|"
for spec in "benchmark 128" "benchmark 1024" "airbench 1024"; do
    set -- $spec
    net=$1 batch=$2
    stage "${BENCH_LIMIT:-90}" "bench-$net-$batch" "$BIN/kiln-cnn" bench --net "$net" --batch "$batch" \
        --steps 30 --warmup 10 --device "$DEVICE"
    kiln=$(grep -o "[0-9]* training images/s" "$WORK/bench-$net-$batch.out" | cut -d' ' -f1)
    torch=-
    if [ "$net" = benchmark ]; then
        stage "${TORCH_LIMIT:-120}" "torch-$net-$batch" python3 "$(dirname "$0")/bench_net_torch.py" --device "$TORCH_DEVICE" \
            --batch "$batch" --steps 50 --warmup 10
        torch=$(grep -o "[0-9]* training images/s" "$WORK/torch-$net-$batch.out" | cut -d' ' -f1)
    fi
    ratio=$(python3 -c "print(f'{$kiln/$torch:.2f}×')" 2>/dev/null || echo -)
    note "| $net, $batch | ${torch:--} | ${kiln:--} | $ratio |"
done
note ""
}

# Faster R-CNN on the raccoon set: two epochs (the first compiles kernels), then the test split.
faster_rcnn() {
stage "${FASTER_LIMIT:-240}" faster-rcnn "$BIN/kiln-detect" train --config "$REPO/configs/raccoon-faster-rcnn.toml" \
    --data "$SHARED/datasets/raccoon-voc.tar.gz" --device "$DEVICE" --epochs 2 --out "$WORK/faster"
cp "$WORK/faster/metrics.jsonl" "$OUT/faster-rcnn-metrics.jsonl" 2>/dev/null
note "## Faster R-CNN (\`configs/raccoon-faster-rcnn.toml\`, 2 epochs)"
note ""
python3 - "$WORK/faster/metrics.jsonl" >> "$TABLE" <<'PY'
import json, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1])]
except OSError:
    print("no metrics: the run did not finish its first epoch (see log.txt)"); sys.exit()
for r in rows:
    if "epoch" in r:
        print(f"- epoch {r['epoch']}: {r.get('images_per_sec', 0):.1f} training images/s, val AP50 {r.get('val_ap50', 0):.3f}")
    if "test" in r:
        t = r["test"]
        print(f"- test (after 2 epochs): {t['images_per_sec']:.1f} images/s, VOC AP50 {t['voc_ap50']:.3f}")
PY
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
for part in ${GPU_STAGES:-bench faster fcn}; do
    case $part in
        bench) bench_rows ;;
        faster) faster_rcnn ;;
        fcn) fcn ;;
        *) echo "unknown stage $part (bench, faster, fcn)" >&2 ;;
    esac
done
note "Stage wall times (seconds, exit status): $(tr '\n' ' ' < "$WORK/stages")"
rm -rf "$WORK"
