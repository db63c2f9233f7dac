#!/bin/bash
cd "$(git rev-parse --show-toplevel)"
mkdir -p ${OUT:-runs/deps-seeds}
d=../shared/data/DebianDeps
trees() { python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) "; }
report() {
  python -c "
import json; ev=[json.loads(l) for l in open('$1/metrics.jsonl')]; f=[r for r in ev if r['event']=='eval'][-1]
r=[r for r in ev if r['event']=='reranker']; lv=r[-1]['reranker_seconds'] if r else 0
print('$2', 'P@1/3/5 %.4f / %.4f / %.4f' % (f['P@1'], f['P@3'], f['P@5']), 'train %.1f + %.1f s + leaves %.1f s' % (f['train_seconds'], f['rebuild_seconds'], lv), 'peak_rss_MB', f.get('peak_rss_mb'))"
}
trees
for seed in 1 2; do
  slidepy train --config configs/debian-deps.yaml --set training.seed=$seed --out ${OUT:-runs/deps-seeds}/config-$seed --overwrite --no-progress --threads 2 > ${OUT:-runs/deps-seeds}/config-$seed.log 2>&1
  report ${OUT:-runs/deps-seeds}/config-$seed "config seed $seed"
done
trees
