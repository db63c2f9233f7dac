#!/bin/bash
# DebianNextWord: PECOS, then configs/debian-nextword.yaml (1 epoch), 2 threads; final whole-split figures.
cd "$(git rev-parse --show-toplevel)"
OUT=${OUT:-runs/after-review}; mkdir -p $OUT
d=../shared/data/DebianNextWord
python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt pecos 2>&1 | grep -E "^pecos " | sed "s/^/DebianNextWord /"
slidepy train --config configs/debian-nextword.yaml --out $OUT/nextword --overwrite --no-progress --threads 2 > $OUT/nextword.log 2>&1
python - $OUT/nextword <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
f = [r for r in ev if r["event"] == "eval"][-1]
print("DebianNextWord config (1 epoch) P@1/3/5 %.4f / %.4f / %.4f" % (f["P@1"], f["P@3"], f["P@5"]),
      "train %.1f + %.1f s" % (f["train_seconds"], f["rebuild_seconds"]), "peak_rss_MB", f.get("peak_rss_mb"))
PY
