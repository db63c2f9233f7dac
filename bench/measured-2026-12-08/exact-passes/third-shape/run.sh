#!/bin/bash
# A third exact-softmax shape (generated: 20,000 samples, 5,000 features, 2,000 labels, 2-6 a
# sample, signal 0.3): the recipe as it plans now (5 passes at lr 0.006) against its own config at
# the rule before (20 passes at 0.002), seeds 0 and 1, with Omikuji and PECOS; 2 threads.
cd "$(git -C /work/main rev-parse --show-toplevel)"
G=${G:-/work/exp/s52/gen}; OUT=${OUT:-$G/runs}; mkdir -p $OUT
report() {
  python -c "
import json; ev=[json.loads(l) for l in open('$1/metrics.jsonl')]; f=[r for r in ev if r['event']=='eval'][-1]
r=[r for r in ev if r['event']=='reranker']; lv=r[-1]['reranker_seconds'] if r else 0
print('$2', 'P@1/3/5 %.4f / %.4f / %.4f' % (f['P@1'], f['P@3'], f['P@5']), 'train %.1f s + leaves %.1f s = %.1f s' % (f['train_seconds'], lv, f['train_seconds'] + lv), 'epochs', f['epoch'], flush=True)"
}
python bench/measured-2026-12-06/transfer-swap/trees.py $G/small3-train.txt $G/small3-test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) "
for seed in 0 1; do
  slidepy train --train $G/small3-train.txt --test $G/small3-test.txt --set training.seed=$seed --out $OUT/new-$seed --overwrite --no-progress > $OUT/new-$seed.log 2>&1
  report $OUT/new-$seed "recipe now (5 passes, 0.006) seed $seed"
  slidepy train --config $OUT/new-$seed/config.yaml --set training.epochs=20 --set training.lr=0.002 --out $OUT/old-$seed --overwrite --no-progress > $OUT/old-$seed.log 2>&1
  report $OUT/old-$seed "rule before (20 passes, 0.002) seed $seed"
done
python bench/measured-2026-12-06/transfer-swap/trees.py $G/small3-train.txt $G/small3-test.txt omikuji,pecos 2>&1 | grep -E "^(omikuji|pecos) "
