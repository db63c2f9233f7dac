#!/bin/bash
# usage: OUT=dir run.sh NAME DATA_DIR [--set k=v ...]: the automatic recipe with overrides; prints the final whole-split line
name=$1; data=$2; shift 2
cd /work/main && slidepy train --train $data/train.txt --test $data/test.txt --set output.run_dir=$OUT/$name "$@" > $OUT/$name.log 2>&1
python - $OUT/$name <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl')]
ev = [r for r in rows if r.get('event') == 'eval']
f = ev[-1]
print(sys.argv[1].split('/')[-1], 'P@1/3/5 %.4f / %.4f / %.4f' % (f['P@1'], f['P@3'], f['P@5']), 'train %.1f + %.1f s' % (f['train_seconds'], f['rebuild_seconds']), 'epochs', f['epoch'], 'curve', [(round(r['epoch'],1), round(r['P@1'],3)) for r in ev[:-1]])
PY
