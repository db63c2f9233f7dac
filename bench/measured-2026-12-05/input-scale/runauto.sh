# usage: runauto.sh NAME TRAIN TEST [extra]
name=$1; tr=$(realpath $2); te=$(realpath $3); shift 3
cd /work/main && timeout 900 slidepy train --train $tr --test $te --out /work/exp/s15/run-$name --overwrite --no-progress "$@" > /work/exp/s15/log-$name.txt 2>&1
python - /work/exp/s15/run-$name/metrics.jsonl $name <<'PY'
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
ev=[r for r in rows if any(k.startswith('P@') or k.startswith('test') for k in r)]
last=ev[-1] if ev else rows[-1]
print(sys.argv[2], {k:(round(v,4) if isinstance(v,float) else v) for k,v in last.items()})
PY
