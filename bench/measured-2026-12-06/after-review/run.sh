#!/bin/bash
# Issue 9's check after the review mends: the trees, then the automatic recipe (no config, no budget),
# on Bibtex, Delicious and DebianDeps, one after the other, 2 threads; final whole-split figures.
cd "$(git rev-parse --show-toplevel)"
R=bench/measured-2026-12-06/after-review
OUT=${OUT:-runs/after-review}; mkdir -p $OUT
for name in Bibtex Delicious DebianDeps; do
  d=../shared/data/$name
  python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) " | sed "s/^/$name /"
  slidepy train --train $d/train.txt --test $d/test.txt --out $OUT/$name --overwrite --no-progress --threads 2 > $OUT/$name.log 2>&1
  python - $OUT/$name $name <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
f = [r for r in ev if r["event"] == "eval"][-1]
print(sys.argv[2], "recipe P@1/3/5 %.4f / %.4f / %.4f" % (f["P@1"], f["P@3"], f["P@5"]),
      "train %.1f + %.1f s" % (f["train_seconds"], f["rebuild_seconds"]), "peak_rss_MB", f.get("peak_rss_mb"))
PY
done
