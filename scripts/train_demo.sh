#!/usr/bin/env bash
# Trains the committed demo weights (weights/demo, lite preset) from scratch on wide-variety
# phantom studies, on the CPU, scores them on the held-out fold and on two phantom sets they
# never saw (the demo's standard set, seed 1000; the wide Table 1 set, seed 9001), and writes
# the paper's Table 1 on the latter to docs/table1.{md,json} (30 studies) and docs/table1-100.{md,json}.
# Needs the train and export extras (`pip install -c .ci/constraints.txt -e ".[train,export]"`).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/w20/train}  # where the committed weights were trained from (config.json)
TEST=${TEST:-data/phantoms-test}
OUT=${OUT:-weights/demo}
ENGINE=${ENGINE:-data/engine-demo}

l2s-phantoms "$DATA" -n 80 --size small --seed 0 --variety wide
l2s-phantoms "$TEST" -n 20 --size small --seed 1000
# --spacing preset: the lite preset's 6.1 x 4.2 x 4.2 mm (the training studies' median, the
# default, is finer and would cost several times the CPU minutes)
time l2s-train all --data "$DATA" --out "$OUT" --preset lite --fold 0 --seed 0 --spacing preset
l2s-train eval --data "$DATA" --out "$OUT" --fold 0
l2s-train eval --data "$TEST" --out "$OUT" --fold -1
l2s-export "$OUT" -o "$ENGINE" --no-tensorrt
python benchmarks/table1.py --engine "$ENGINE" --studies 30 --seed 9001 --size small --variety wide --out docs/table1
python benchmarks/table1.py --engine "$ENGINE" --studies 100 --seed 9001 --size small --variety wide --out docs/table1-100
