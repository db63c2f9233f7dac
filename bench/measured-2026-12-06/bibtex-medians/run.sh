#!/bin/bash
# Issue 9's Bibtex time target on a noisy shared VM: the config and the trees, interleaved, 5 rounds,
# 2 threads, whole test split; each line one run. Medians are computed by medians.py.
cd "$(git rev-parse --show-toplevel)"
d=../shared/data/Bibtex; OUT=${OUT:-runs/bibtex-medians}; mkdir -p $OUT
for round in 1 2 3 4 5; do
  python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) "
  slidepy train --config configs/bibtex.yaml --out $OUT/r$round --overwrite --no-progress --threads 2 > $OUT/r$round.log 2>&1
  python - $OUT/r$round <<'PY'
import json, sys
f = [r for r in map(json.loads, open(sys.argv[1] + "/metrics.jsonl")) if r["event"] == "eval"][-1]
print("slidepy", {"P@1": round(f["P@1"], 4), "P@3": round(f["P@3"], 4), "P@5": round(f["P@5"], 4), "train_seconds": f["train_seconds"]})
PY
done
