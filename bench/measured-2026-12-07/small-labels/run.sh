#!/bin/bash
# Bibtex: the shipped config (4 epochs + leaves at 0.2, leaves against at most an eighth of the
# labels) against the config before (5 epochs, no leaves), three seeds each, the recipe once, and
# Omikuji and PECOS before and after; 2 threads, whole test split.
cd "$(git rev-parse --show-toplevel)"
OUT=${OUT:-runs/small-labels}; mkdir -p $OUT; d=../shared/data/Bibtex
trees() { python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) "; }
report() {
  python -c "
import json; ev=[json.loads(l) for l in open('$1/metrics.jsonl')]; f=[r for r in ev if r['event']=='eval'][-1]
r=[r for r in ev if r['event']=='reranker']; lv=r[-1]['reranker_seconds'] if r else 0
print('$2', 'P@1/3/5 %.4f / %.4f / %.4f' % (f['P@1'], f['P@3'], f['P@5']), 'train %.2f s + leaves %.2f s = %.2f s' % (f['train_seconds'] + f['rebuild_seconds'], lv, f['train_seconds'] + f['rebuild_seconds'] + lv), 'peak_rss_MB', f.get('peak_rss_mb'))"
}
trees
for seed in 0 1 2; do
  for cfg in configs/bibtex.yaml ${BEFORE:-bench/measured-2026-12-07/small-labels/bibtex-before.yaml}; do
    name=$(basename $cfg .yaml)
    slidepy train --config $cfg --set training.seed=$seed --out $OUT/$name-$seed --overwrite --no-progress --threads 2 > $OUT/$name-$seed.log 2>&1
    report $OUT/$name-$seed "$name seed $seed"
  done
done
slidepy train --train $d/train.txt --test $d/test.txt --out $OUT/recipe --overwrite --no-progress --threads 2 > $OUT/recipe.log 2>&1
report $OUT/recipe "recipe seed 0"
trees
