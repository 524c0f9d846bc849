#!/usr/bin/env bash
# Kills a kiln-mlp training at its Nth rename(2) call, for every N the run makes, resumes it,
# and compares the resumed run's metrics.jsonl (every epoch's losses, the test accuracy) with an
# uninterrupted run's. Renames are where files and checkpoint sets become visible, so these are
# the moments a kill could leave a checkpoint half-updated.
#
#   cargo build --release --bin kiln-mlp
#   benches/kill_resume.sh target/release/kiln-mlp DATA_DIR      # an ImageFolder with train/, test/
#
# Needs strace (Debian: apt-get install strace) and python3. Prints one line per kill point that
# went wrong and a summary.
set -euo pipefail
BIN=$(realpath "$1")
DATA=$(realpath "$2")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
export KILN_DATA="$WORK/cache"
cat > mlp.toml <<'TOML'
val_images = 100
hidden = [64]
[train]
epochs = 4
batch_size = 50
learning_rate = 0.01
workers = 1
[train.optimizer]
name = "sgd"
momentum = 0.9
TOML
signature() {
  python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(json.dumps([(r.get('epoch'), r.get('train_loss'), r.get('val_loss'), r.get('test_accuracy')) for r in rows]))" "$1"
}
"$BIN" --data "$DATA" --config mlp.toml --out straight > /dev/null 2>&1
signature straight/metrics.jsonl > straight.sig
renames=$(strace -f -c -e trace=rename "$BIN" --data "$DATA" --config mlp.toml --out counted 2>&1 >/dev/null |
  awk '$NF == "rename" { print $4 }')
same=0; differ=0; early=0; leftovers=0
for n in $(seq 1 "$renames"); do
  rm -rf k
  ( strace -f -o /dev/null -e "inject=rename:signal=KILL:when=$n" \
    "$BIN" --data "$DATA" --config mlp.toml --out k > /dev/null 2>&1 || true ) 2> /dev/null
  if [ ! -f k/checkpoints/state.json ]; then early=$((early + 1)); continue; fi
  if ! "$BIN" --resume k > resume.log 2>&1; then
    echo "kill at rename $n: resume failed: $(tail -1 resume.log)"; differ=$((differ + 1)); continue
  fi
  signature k/metrics.jsonl > k.sig
  if cmp -s k.sig straight.sig; then same=$((same + 1)); else
    echo "kill at rename $n: metrics differ from the uninterrupted run"; differ=$((differ + 1))
  fi
  hidden=$(find k/checkpoints -name '.*' | wc -l)
  sets=$(find k/checkpoints -maxdepth 1 -name 'epoch-*' | wc -l)
  if [ "$hidden" != 0 ] || [ "$sets" != 1 ]; then
    echo "kill at rename $n: $hidden temporary files, $sets checkpoint sets left"; leftovers=$((leftovers + 1))
  fi
done
echo "$renames kill points: $same resumed identical, $differ differ, $early before the first checkpoint (nothing to resume), $leftovers with leftovers"
