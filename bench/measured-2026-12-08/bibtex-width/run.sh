#!/bin/bash
# Bibtex config variants beside the trees, interleaved; 2 threads, whole test split.
cd "$(git rev-parse --show-toplevel)"
OUT=${OUT:-runs/bibtex-width}; mkdir -p $OUT; d=../shared/data/Bibtex
trees() { python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) "; }
report() {
  python -c "
import json; ev=[json.loads(l) for l in open('$1/metrics.jsonl')]; f=[r for r in ev if r['event']=='eval'][-1]
r=[r for r in ev if r['event']=='reranker']; lv=r[-1]['reranker_seconds'] if r else 0
print('$2', 'P@1/3/5 %.4f / %.4f / %.4f' % (f['P@1'], f['P@3'], f['P@5']), 'train %.2f s + leaves %.2f s = %.2f s' % (f['train_seconds'] + f['rebuild_seconds'], lv, f['train_seconds'] + f['rebuild_seconds'] + lv), 'peak_rss_MB', f.get('peak_rss_mb'))"
}
trees
for seed in 0 1 2; do
  for v in ship e3 h256 h256e3; do
    case $v in ship) s="";; e3) s="--set training.epochs=3 --set training.lr=0.008";; h256) s="--set model.hidden=[256]";;
      h256e3) s="--set model.hidden=[256] --set training.epochs=3 --set training.lr=0.008";; esac
    slidepy train --config configs/bibtex.yaml $s --set training.seed=$seed --out $OUT/$v-$seed --overwrite --no-progress --threads 2 > $OUT/$v-$seed.log 2>&1
    report $OUT/$v-$seed "$v seed $seed"
  done
  trees
done
