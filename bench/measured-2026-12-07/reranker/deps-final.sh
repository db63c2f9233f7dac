#!/bin/bash
# DebianDeps: the trees, the shipped config (with the re-ranking leaves), one after the other, 2 threads.
cd /work/main
OUT=/work/exp/s33/runs; d=../shared/data/DebianDeps
python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) " | sed "s/^/DebianDeps /"
slidepy train --config configs/debian-deps.yaml --out $OUT/config-debian-deps --overwrite --no-progress --threads 2 > $OUT/config-debian-deps.log 2>&1
python - $OUT/config-debian-deps <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
f = [r for r in ev if r["event"] == "eval"][-1]
rr = [r for r in ev if r["event"] == "reranker"]
print("DebianDeps config P@1/3/5 %.4f / %.4f / %.4f" % (f["P@1"], f["P@3"], f["P@5"]),
      "train %.1f + %.1f s" % (f["train_seconds"], f["rebuild_seconds"]), "leaves %.1f s" % rr[-1]["reranker_seconds"], "peak_rss_MB", f.get("peak_rss_mb"))
PY
python /work/exp/s33/ablate.py $OUT/config-debian-deps $d/train.txt $d/test.txt
