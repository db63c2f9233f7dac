#!/bin/bash
# The leaves' depth chosen with their share ("auto"): on each set Omikuji and PECOS, then the
# automatic recipe (no config; the generated shapes under --time-budget 90s as in
# ../transfer-items-tags/), one after the other, 2 threads; whole test splits.
# OUT: where the runs go; GEN: the generated sets (../rebuild-ramp/gen.py, commands in
# ../transfer-items-tags/README.md); arguments "Name train test [budget|-] [config]" pick sets (with
# a config from configs/, that is run too).
cd "$(git rev-parse --show-toplevel)"
OUT=${OUT:-runs/depth}; GEN=${GEN:-/work/exp/s35/data}; mkdir -p $OUT
report() {  # run dir, label: the final evaluation's P@k, seconds, peak RSS and the leaves' choice (if any)
  python - "$1" "$2" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
f = [r for r in ev if r["event"] == "eval"][-1]
r = ([r for r in ev if r["event"] == "reranker"] or [{"reranker_seconds": 0.0, "reranker_share": None}])[-1]
print(sys.argv[2], "P@1/3/5 %.4f / %.4f / %.4f" % (f["P@1"], f["P@3"], f["P@5"]),
      "train %.1f + %.1f s" % (f["train_seconds"], f["rebuild_seconds"]), "leaves %.1f s" % r["reranker_seconds"],
      "share", r["reranker_share"], "depth", r.get("reranker_depth"), "held out", r.get("reranker_held_out"),
      "peak_rss_MB", f.get("peak_rss_mb"), flush=True)
PY
}
d=../shared/data
[ $# -gt 0 ] || set -- "Bibtex $d/Bibtex/train.txt $d/Bibtex/test.txt - bibtex" \
  "Delicious $d/Delicious/train.txt $d/Delicious/test.txt - delicious" \
  "DebianDeps $d/DebianDeps/train.txt $d/DebianDeps/test.txt - debian-deps" \
  "DebianNextWord $d/DebianNextWord/train.txt $d/DebianNextWord/test.txt - debian-nextword" \
  "items $GEN/items-train.txt $GEN/items-test.txt 90s" "tags $GEN/tags-train.txt $GEN/tags-test.txt 90s"
for spec in "$@"; do
  set -- $spec; name=$1; train=$2; test=$3; budget=; [ "${4:--}" = - ] || budget="--time-budget $4"; cfg=${5:-}
  python bench/measured-2026-12-06/transfer-swap/trees.py $train $test omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) " | sed "s/^/$name /"
  slidepy train --train $train --test $test $budget --out $OUT/recipe-$name --overwrite --no-progress --threads 2 > $OUT/recipe-$name.log 2>&1
  report $OUT/recipe-$name "$name recipe"
  if [ -n "$cfg" ]; then
    slidepy train --config configs/$cfg.yaml --out $OUT/config-$name --overwrite --no-progress --threads 2 > $OUT/config-$name.log 2>&1
    report $OUT/config-$name "$name config"
  fi
done
