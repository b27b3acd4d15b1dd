#!/usr/bin/env bash
# Trains the committed demo weights (weights/demo, lite preset) from scratch on phantom
# studies, on the CPU, and scores them on the held-out fold and on an independent phantom set.
# Needs the train extra (`pip install -c .ci/constraints.txt -e ".[train]"`).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-data/phantoms-train80}
TEST=${TEST:-data/phantoms-test}
OUT=${OUT:-weights/demo}

l2s-phantoms "$DATA" -n 80 --size small --seed 0
l2s-phantoms "$TEST" -n 20 --size small --seed 1000
time l2s-train all --data "$DATA" --out "$OUT" --preset lite --fold 0 --seed 0
l2s-train eval --data "$DATA" --out "$OUT" --fold 0
l2s-train eval --data "$TEST" --out "$OUT" --fold -1
