#!/bin/sh
# Regenerates models/pico-clip (v2) from the npm packages alone: render the corpus (EmojiScenes' pretraining
# pool P only: P emoji, P scenes, icons; leak-checked), learn the tokenizer, train, export (ONNX + config +
# tokenizer + PyTorch reference), evaluate on EmojiScenes test, and run the tests.
#   sh tools/pico-clip/make.sh                                     # the shipped model's settings (CPU, ~60 min)
#   STEPS=900 OUT=/tmp/pico-s900 sh tools/pico-clip/make.sh        # by steps: exactly repeatable (same seed)
#   DEVICE=cuda BATCH=1024 STEPS=8000 TRAIN_ARGS="--width 256 --layers 6 ..." sh tools/pico-clip/make.sh   # a GPU
# Needs Debian's python3-torch (1.13) + python3-onnx and the devDependencies (npm ci). Work files go to $WORK.
# The evaluation reads an EmojiScenes build ($SCENES; `clip-decoder data scenes --out $SCENES` makes one).
set -eu
cd "$(dirname "$0")/../.."
RENDER=${RENDER:-128}      # corpus render size (EmojiScenes' own); the model resamples it to SIZE
SIZE=${SIZE:-96}
SEED=${SEED:-0}
MINUTES=${MINUTES:-55}     # the shipped run: a wall-clock budget with the cosine schedule over it
STEPS=${STEPS:-0}          # > 0: train by steps instead (repeatable), with MINUTES only as a guard
THREADS=${THREADS:-2}
DEVICE=${DEVICE:-cpu}
BATCH=${BATCH:-256}
WORK=${WORK:-/tmp/pico-clip}
OUT=${OUT:-models/pico-clip}
SCENES=${SCENES:-/work/emojiscenes}
TRAIN_ARGS=${TRAIN_ARGS:-"--stem 16,32,64,128 --patch 16 --width 160 --layers 4 --text-width 128 --text-layers 3 --proj 128 --emoji-share 0.6 --scene-share 0.25 --region-weight 0.5 --val-every 8"}

node --import tsx tools/pico-clip/corpus.ts --out "$WORK/corpus-$RENDER" --size "$RENDER"
RUN="$WORK/run-s$SEED-$SIZE-m$MINUTES-n$STEPS-$DEVICE"  # a rerun of the same settings resumes from its checkpoint
if [ "$STEPS" -gt 0 ]; then BUDGET="--steps $STEPS --max-minutes $MINUTES"; else BUDGET="--minutes $MINUTES"; fi
# shellcheck disable=SC2086
/usr/bin/python3 tools/pico-clip/train.py --corpus "$WORK/corpus-$RENDER" --out "$RUN" --seed "$SEED" --image-size "$SIZE" \
  --threads "$THREADS" --device "$DEVICE" --batch "$BATCH" $BUDGET $TRAIN_ARGS

# ship: the exported folder plus its training record and loss curve (no checkpoint, no safetensors: 32 MB budget)
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
cp -r "$RUN/model/." "$OUT.tmp/"
cp "$RUN/training.json" "$RUN/loss.svg" "$OUT.tmp/"
if [ -f "$OUT/README.md" ]; then cp "$OUT/README.md" "$OUT.tmp/"; fi
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"

[ -f "$SCENES/split.json" ] || node bin/clip-decoder.js data scenes --out "$SCENES"
node --import tsx tools/pico-clip/evaluate.ts --model "$OUT" --data "$SCENES" --json "$OUT/eval.json"
if [ "$OUT" = "models/pico-clip" ]; then
  node --import tsx --test tests/pico-clip-corpus.test.ts tests/pico-clip-model.test.ts
fi
