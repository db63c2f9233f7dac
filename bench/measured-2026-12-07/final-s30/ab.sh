#!/bin/bash
# Delicious' config at the session's start (c2f207f, a worktree) and at HEAD, alternating, 2 threads.
D=/work/shared/data/Delicious
for round in 1 2; do
  for arm in old new; do
    if [ $arm = old ]; then dir=/tmp/wt-old; else dir=/work/main; fi
    (cd $dir && PYTHONPATH=$dir python -m slidepy.cli train --config configs/delicious.yaml --out /tmp/ab-$arm \
      --overwrite --no-progress --threads 2 --set data.train=$D/train.txt --set data.test=$D/test.txt \
      --set data.cache_dir=/work/main/.cache/data > /tmp/ab-$arm.log 2>&1)
    python -c "
import json
r=[json.loads(l) for l in open('/tmp/ab-$arm/metrics.jsonl')]
ev=[x for x in r if x['event']=='eval'][-1]; logs=[x['samples_per_s'] for x in r if x['event']=='log']
print('$round $arm', 'train', ev['train_seconds'], 'median rate', round(sorted(logs)[len(logs)//2]), 'P@1', ev['P@1'])"
  done
done
