#!/bin/bash
# The shipped configs of Bibtex, Delicious and DebianDeps, 2 threads; final whole-split figures.
cd "$(git rev-parse --show-toplevel)"
OUT=${OUT:-runs/after-review}; mkdir -p $OUT
for name in bibtex delicious debian-deps; do
  slidepy train --config configs/$name.yaml --out $OUT/config-$name --overwrite --no-progress --threads 2 > $OUT/config-$name.log 2>&1
  python - $OUT/config-$name $name <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
f = [r for r in ev if r["event"] == "eval"][-1]
print(sys.argv[2], "config P@1/3/5 %.4f / %.4f / %.4f" % (f["P@1"], f["P@3"], f["P@5"]),
      "train %.1f + %.1f s" % (f["train_seconds"], f["rebuild_seconds"]), "peak_rss_MB", f.get("peak_rss_mb"))
PY
done
