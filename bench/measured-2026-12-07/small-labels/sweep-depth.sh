#!/bin/bash
cd /work/main
for K in 20 40; do
  for seed in 0 1 2; do
    out=/work/exp/s38/bib/ep4_rr_k$K-$seed
    SLIDEPY_K=$K slidepy train --config configs/bibtex.yaml --set training.epochs=4 --set model.reranker.weight=0.2 --set training.seed=$seed --out $out --overwrite --no-progress --threads 2 > $out.log 2>&1
    python -c "
import json; ev=[json.loads(l) for l in open('$out/metrics.jsonl')]; f=[r for r in ev if r['event']=='eval'][-1]
r=[r for r in ev if r['event']=='reranker']; lv=r[-1]['reranker_seconds'] if r else 0
print('ep4_rr k=$K', $seed, 'P@1/3/5 %.4f / %.4f / %.4f' % (f['P@1'], f['P@3'], f['P@5']), 'train %.2f s + leaves %.2f s' % (f['train_seconds'], lv))"
  done
done
