#!/bin/sh
# Regenerates models/pico-clip from the npm packages alone: render the corpus, learn the tokenizer, train,
# export (ONNX + config + tokenizer + PyTorch reference), evaluate on EmojiTags test, and run the tests.
#   sh tools/pico-clip/make.sh                  # the shipped model's settings
#   SEED=1 STEPS=300 OUT=/tmp/pico-s1 sh tools/pico-clip/make.sh   # a shorter run elsewhere
# Needs Debian's python3-torch (1.13) + python3-onnx and the devDependencies (npm ci). Work files go to $WORK.
set -eu
cd "$(dirname "$0")/../.."
SIZE=${SIZE:-64}
SEED=${SEED:-0}
STEPS=${STEPS:-1600}
THREADS=${THREADS:-1}
WORK=${WORK:-/tmp/pico-clip}
OUT=${OUT:-models/pico-clip}
TRAIN_ARGS=${TRAIN_ARGS:-"--stem 24,48,96,128 --patch 16 --emoji-share 0.9"}

node --import tsx tools/pico-clip/corpus.ts --out "$WORK/corpus-$SIZE" --size "$SIZE"
# shellcheck disable=SC2086
/usr/bin/python3 tools/pico-clip/train.py --corpus "$WORK/corpus-$SIZE" --out "$WORK/run-s$SEED-n$STEPS" --seed "$SEED" \
  --steps "$STEPS" --threads "$THREADS" $TRAIN_ARGS

# ship: the exported folder plus its training record and loss curve (no checkpoint, no safetensors: 32 MB budget)
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
RUN="$WORK/run-s$SEED-n$STEPS"  # a rerun of the same settings resumes from its checkpoint
cp -r "$RUN/model/." "$OUT.tmp/"
cp "$RUN/training.json" "$RUN/loss.svg" "$OUT.tmp/"
if [ -f "$OUT/README.md" ]; then cp "$OUT/README.md" "$OUT.tmp/"; fi
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"

node --import tsx tools/pico-clip/evaluate.ts --model "$OUT" --json "$OUT/eval.json"
if [ "$OUT" = "models/pico-clip" ]; then
  node --import tsx --test tests/pico-clip-corpus.test.ts tests/pico-clip-model.test.ts
fi
