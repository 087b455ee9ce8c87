#!/bin/sh
# Regenerates models/pico-clip-decoder, the bundled head: the best configuration of `npm run experiments`
# (CLIP-Decoder: CLIP text queries, ASL + CLIP loss with the α chosen there on validation), retrained on all of
# EmojiTags' training images (train + validation, every seen label) for the same number of epochs.
#   ALPHA=30 EPOCHS=4 sh tools/make-default-head.sh
set -eu
cd "$(dirname "$0")/.."
ALPHA=${ALPHA:?set ALPHA to the value docs/RESULTS.md reports as chosen}
EPOCHS=${EPOCHS:-4}
WORK=${WORK:-.cache/experiments}
[ -f "$WORK/emojitags/split.json" ] || node bin/clip-decoder.js data emoji --out "$WORK/emojitags"
node bin/clip-decoder.js train --dataset "$WORK/emojitags" --cache "$WORK/features-pico_clip" --out "$WORK/default-head" \
  --model models/pico-clip --final --epochs "$EPOCHS" --batch-size 56 --lr 1e-3 --alpha "$ALPHA" \
  --d-model 128 --heads 4 --ffn 512 --dropout 0.1 --seed 0
rm -rf models/pico-clip-decoder.tmp
cp -r "$WORK/default-head/best" models/pico-clip-decoder.tmp
cp "$WORK/default-head/training-log.json" "$WORK/default-head/training-curves.svg" models/pico-clip-decoder.tmp/
cp -r "$WORK/default-head/test-report" models/pico-clip-decoder.tmp/test-report
rm -rf models/pico-clip-decoder
mv models/pico-clip-decoder.tmp models/pico-clip-decoder
