#!/bin/bash
# alternate cold quick starts: old (HEAD worktree) vs new (working tree)
for i in 1 2 3; do
  for v in old new; do
    if [ $v = old ]; then dir=/tmp/old; else dir=/work/main; fi
    c=$(mktemp -d)
    cd $dir
    s=$(date +%s.%N)
    NUMBA_CACHE_DIR=$c PYTHONPATH=$dir python -m slidepy.cli train --config configs/quickstart.yaml --overwrite --out $c/run --no-progress > $c/log 2>&1
    e=$(date +%s.%N)
    echo "$v wall $(echo "$e - $s" | bc) $(grep -o 'first run only)... [0-9.]* s' $c/log) $(grep -o 'P@1 [0-9.]*' $c/log | tail -1)"
    rm -rf $c
  done
done
