#!/bin/bash
cd /work/main
d=../shared/data/Bibtex
for v in "base_rr:--set model.reranker.weight=0.2" "ep4_rr:--set training.epochs=4 --set model.reranker.weight=0.2" "ep3_rr:--set training.epochs=3 --set model.reranker.weight=0.2"; do
  name=${v%%:*}; args=${v#*:}
  for seed in 0 1 2; do
    out=/work/exp/s38/bib/$name-$seed
    slidepy train --config configs/bibtex.yaml $args --set training.seed=$seed --out $out --overwrite --no-progress --threads 2 > $out.log 2>&1
    python -c "
import json; ev=[json.loads(l) for l in open('$out/metrics.jsonl')]; f=[r for r in ev if r['event']=='eval'][-1]
r=[r for r in ev if r['event']=='reranker']; lv=r[-1]['reranker_seconds'] if r else 0
print('$name', $seed, 'P@1/3/5 %.4f / %.4f / %.4f' % (f['P@1'], f['P@3'], f['P@5']), 'train %.2f s + leaves %.2f s' % (f['train_seconds'], lv))"
  done
done
python bench/measured-2026-12-06/transfer-swap/trees.py $d/train.txt $d/test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) "
