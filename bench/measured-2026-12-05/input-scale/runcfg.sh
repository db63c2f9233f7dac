# usage: runcfg.sh NAME CONFIG TRAIN TEST [extra]
name=$1; cfg=$(realpath $2); tr=$(realpath $3); te=$(realpath $4); shift 4
cd /work/main && timeout 1200 slidepy train --config $cfg --train $tr --test $te --out /work/exp/s15/run-$name --overwrite --no-progress "$@" > /work/exp/s15/log-$name.txt 2>&1
python - /work/exp/s15/run-$name/metrics.jsonl $name <<'PY'
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
ev=[r for r in rows if 'P@1' in r]
for r in ev[:-1]: print(' ', r.get('epoch'), r.get('train_seconds'), r.get('P@1'), r.get('P@5'))
last=ev[-1] if ev else rows[-1]
print(sys.argv[2], {k:(round(v,4) if isinstance(v,float) else v) for k,v in last.items() if k in ('epoch','train_seconds','rebuild_seconds','P@1','P@3','P@5','peak_rss_mb')})
PY
