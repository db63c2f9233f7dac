#!/bin/bash
# Issue 9's check with the leaves' random negatives and the recipe's "auto" share: on each real set, Omikuji and PECOS, the automatic
# recipe (no config, no budget), then the shipped config, one after the other, 2 threads; final
# whole-split figures. OUT: where the runs go; arguments "Name config" pick sets (default: all four).
cd "$(git rev-parse --show-toplevel)"
OUT=${OUT:-runs/final-s34}; mkdir -p $OUT
report() {  # run dir, label: the final evaluation's P@k, seconds and peak RSS, and the leaves' seconds
  python - "$1" "$2" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
f = [r for r in ev if r["event"] == "eval"][-1]
leaves = [r["reranker_seconds"] for r in ev if r["event"] == "reranker"]
print(sys.argv[2], "P@1/3/5 %.4f / %.4f / %.4f" % (f["P@1"], f["P@3"], f["P@5"]),
      "train %.1f + %.1f s" % (f["train_seconds"], f["rebuild_seconds"]),
      "leaves %.1f s" % leaves[-1] if leaves else "no leaves", "peak_rss_MB", f.get("peak_rss_mb"), flush=True)
PY
}
[ $# -gt 0 ] || set -- "Bibtex bibtex" "Delicious delicious" "DebianDeps debian-deps" "DebianNextWord debian-nextword"
for pair in "$@"; do
  set -- $pair; name=$1; cfg=$2; d=../shared/data/$name
  python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) " | sed "s/^/$name /"
  slidepy train --train $d/train.txt --test $d/test.txt --out $OUT/recipe-$name --overwrite --no-progress --threads 2 > $OUT/recipe-$name.log 2>&1
  report $OUT/recipe-$name "$name recipe"
  slidepy train --config configs/$cfg.yaml --out $OUT/config-$name --overwrite --no-progress --threads 2 > $OUT/config-$name.log 2>&1
  report $OUT/config-$name "$name config"
done
