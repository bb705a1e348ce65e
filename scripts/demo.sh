#!/bin/sh
# The demo behind `make demo`: stand-in corpus -> T2S on 2 Ray Train workers (DeepSpeed ZeRO-2) -> samples.
set -eu
OUT="${1:-demo_out}"
mkdir -p "$OUT"
echo "== 1/3 a small caption corpus in the TSFragment-600K layout"
seriesforge data captions make --n 6000 --format tsfragment --seed 0 --out "$OUT/corpus"
seriesforge data captions inspect "$OUT/corpus"
echo "== 2/3 train T2S (autoencoder, then DiT) with 2 workers under DeepSpeed ZeRO-2, embedded local Ray"
seriesforge train t2s --preset small --data "captions:$OUT/corpus" --out "$OUT/run" \
    --workers 2 --strategy deepspeed --set strategy.zero_stage=2
echo "== 3/3 generate: three captions at each trained length (24, 48, 96) and an untrained one (64)"
# Phrased as the stand-in corpus phrases its fragment captions, so the model has seen such text.
set -- --caption "The series climbs at an accelerating pace." \
       --caption "The series stays flat apart from one sharp peak in the middle." \
       --caption "The series goes up and down in 3 regular cycles."
seriesforge generate --checkpoint "$OUT/run" "$@" --length 24 --length 48 --length 96 --length 64 \
    --samples-per-caption 3 --seed 0 --out "$OUT/samples.png"
seriesforge generate --checkpoint "$OUT/run" "$@" --length 24 --length 48 --length 96 --length 64 \
    --samples-per-caption 3 --seed 0 --out "$OUT/samples.parquet"
echo
echo "corpus       $OUT/corpus"
echo "run          $OUT/run   (config.json, metrics.jsonl, checkpoints under ray/train/)"
echo "samples      $OUT/samples.png  $OUT/samples.parquet"
