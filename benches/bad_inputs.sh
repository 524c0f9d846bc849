#!/usr/bin/env bash
# Feeds bad inputs to every kiln binary and counts what a user would mind: panics (exit 101 or
# "panicked"), messages that do not name the culprit (the file, flag or setting at fault), and
# run directories left behind by a refused start.
#
#   cargo build --release --bins
#   benches/bad_inputs.sh target/release DATA_DIR     # DATA_DIR: an ImageFolder with train/, test/
#
# Needs python3. Prints one line per case that went wrong and a summary per binary.
set -uo pipefail
BIN=$(realpath "$1")
DATA=$(realpath "$2")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export KILN_DATA="$WORK/cache"

# Fixtures: a copy of the data with one JPEG cut to a third, configs, junk files.
cp -r "$DATA" cut
victim=$(find cut/train -name '*.jpg' | sort | head -1)
python3 -c "import sys; p=sys.argv[1]; b=open(p,'rb').read(); open(p,'wb').write(b[:len(b)//3])" "$victim"
head -c 5000 /dev/urandom > junk.tar.gz
head -c 5000 /dev/urandom > junk.pth
printf 'a\nb\nc\n' > three.txt
cp "$(find "$DATA/test" -name '*.jpg' | sort | head -1)" photo.jpg
python3 -c "b=open('photo.jpg','rb').read(); open('cut.jpg','wb').write(b[:len(b)//3])"
printf 'samples_per_clas = 3\n' > typo.toml
printf 'val_images = 100\n[train]\nepochs = 0\n' > epochs0.toml
printf 'val_images = 100\n[[augment]]\ntype = "random-crop"\nsize = 40\npadding = 4\n' > crop40.toml
printf 'val_images = 100\n[train]\nepochs = 1\n' > nomodel.toml
printf 'val_images = 100\n[model]\ntype = "conv-net"\nstages = [[4], [4], [4], [4], [4], [4]]\n' > shrink.toml
printf 'val_images = 100\n[model]\ntype = "conv-net"\nstages = [[4]]\n[train.optimizer]\nname = "rmsprop"\n' > rmsprop.toml
printf 'val_images = 100\n[model]\ntype = "conv-net"\nstages = [[4]]\n[train]\nlearning_rate = -1.0\n' > lr.toml
printf 'image_size = 8\n' > tiny.toml
printf 'val_images = 100\nhidden = [8]\n[train]\nepochs = 1\n' > ok.toml
mkdir -p notarun && echo keep > notarun/mine.txt

declare -A total panics vague leftovers
# case BINARY EXPECTED-SUBSTRING OUT-DIR-OR-- ARGS...
case_() {
  local bin=$1 expected=$2 out=$3; shift 3
  local name; name=$(basename "$bin")
  total[$name]=$(( ${total[$name]:-0} + 1 ))
  local args=("$@")
  [ "$out" != "--" ] && args+=(--out "$out")
  "$BIN/$bin" "${args[@]}" > out.txt 2>&1
  local code=$?
  if [ $code = 0 ] || [ $code = 101 ] || grep -q panicked out.txt; then
    panics[$name]=$(( ${panics[$name]:-0} + 1 )); echo "$name ${args[*]}: exit $code: $(tail -1 out.txt)"
  elif ! grep -qF -- "$expected" out.txt; then
    vague[$name]=$(( ${vague[$name]:-0} + 1 )); echo "$name ${args[*]}: does not name '$expected': $(tail -1 out.txt)"
  fi
  if [ "$out" != "--" ] && [ -e "$out" ] && [ "$out" != notarun ]; then
    leftovers[$name]=$(( ${leftovers[$name]:-0} + 1 )); echo "$name ${args[*]}: left $out"
  fi
  if [ "$out" = notarun ] && [ "$(ls notarun)" != mine.txt ]; then
    leftovers[$name]=$(( ${leftovers[$name]:-0} + 1 )); echo "$name ${args[*]}: wrote into notarun/"
  fi
}

case_ kiln-data no-such-dataset r1 --data no-such-dataset
case_ kiln-data 0x0 r2 --data "$DATA" --resize 0x0
case_ kiln-data 20000x20000 r3 --data "$DATA" --resize 20000x20000
case_ kiln-data typo.toml r4 --data "$DATA" --config typo.toml
case_ kiln-data junk.tar.gz r5 --data junk.tar.gz
case_ kiln-data "$(basename "$victim")" r6 --data cut
case_ kiln-data notarun notarun --data "$DATA"
case_ kiln-knn l3 r7 --data "$DATA" --metric l3
case_ kiln-knn no-such-dataset r8 --data no-such-dataset
case_ kiln-knn "number of folds" r9 cv --data "$DATA" --folds 1
case_ kiln-knn "number of folds" r10 cv --data "$DATA" --folds 100000
case_ kiln-knn "k = 100000" r10b --data "$DATA" --k 100000
case_ kiln-linear iterations r11 --data "$DATA" --iterations 0
case_ kiln-linear learning_rate r12 --data "$DATA" --learning-rate=-1
case_ kiln-linear hinge r13 --data "$DATA" --loss hinge
case_ kiln-linear "--grad" r14 --data "$DATA" --grad numeric
case_ kiln-mlp "epochs (0)" r15 --data "$DATA" --config epochs0.toml
case_ kiln-mlp crop40.toml r16 --data "$DATA" --config crop40.toml
case_ kiln-mlp typo.toml r17 --data "$DATA" --config typo.toml
case_ kiln-mlp "not a kiln run" -- --resume notarun
case_ kiln-mlp notarun notarun --data "$DATA" --config ok.toml
case_ kiln-cnn nomodel.toml r18 --data "$DATA" --config nomodel.toml
case_ kiln-cnn "to nothing" r19 --data "$DATA" --config shrink.toml
case_ kiln-cnn rmsprop r20 --data "$DATA" --config rmsprop.toml
case_ kiln-cnn "learning rate" r21 --data "$DATA" --config lr.toml
case_ kiln-cnn crop40.toml r22 --data "$DATA" --config crop40.toml
case_ kiln-cnn "no-such-run" -- ensemble no-such-run
if [ -n "${KILN_SHARED:-}" ]; then
  case_ kiln-classify cut.jpg -- --weights efficientnet-lite0 cut.jpg
  case_ kiln-classify three.txt -- --weights efficientnet-lite0 --classes three.txt photo.jpg
  case_ kiln-classify "--tolerance NaN" -- --weights efficientnet-lite0 \
    --reference "$KILN_SHARED/pretrained/efficientnet-lite0-reference.safetensors" --tolerance NaN
fi
case_ kiln-classify junk.pth -- --weights junk.pth photo.jpg
case_ kiln-classify no-such-weights -- --weights no-such-weights photo.jpg
case_ kiln-finetune half r23 --data "$DATA" --strategy half
case_ kiln-finetune "image_size 8" r24 --data "$DATA" --config tiny.toml
case_ kiln-finetune junk.pth r25 --data "$DATA" --weights junk.pth

printf '\n%-14s %6s %7s %15s %10s\n' binary inputs panics "vague messages" leftovers
for name in kiln-data kiln-knn kiln-linear kiln-mlp kiln-cnn kiln-classify kiln-finetune; do
  printf '%-14s %6s %7s %15s %10s\n' "$name" "${total[$name]:-0}" "${panics[$name]:-0}" "${vague[$name]:-0}" "${leftovers[$name]:-0}"
done
