#!/bin/bash
# interleaved warm runs, old (HEAD worktree) vs new (working tree): train_seconds of a config
cfg=$1; n=${2:-4}
for v in old new; do dir=$([ $v = old ] && echo /tmp/old || echo /work/main); cd $dir; PYTHONPATH=$dir python -m slidepy.cli train --config $cfg $SETS --overwrite --out /tmp/steps-$v --no-progress > /dev/null 2>&1; done
for i in $(seq $n); do
  for v in old new; do
    dir=$([ $v = old ] && echo /tmp/old || echo /work/main); cd $dir
    PYTHONPATH=$dir python -m slidepy.cli train --config $cfg $SETS --overwrite --out /tmp/steps-$v --no-progress > /dev/null 2>&1
    python -c "import json; r=[json.loads(l) for l in open('/tmp/steps-$v/metrics.jsonl')][-1]; print('$v', r['train_seconds'], round(r['P@1'],4), round(r['P@5'],4))"
  done
done
