#!/bin/bash
# cold `make quickstart` from fresh clones, interleaved: $1 (old commit) vs $2 (new commit)
for i in $(seq ${ROUNDS:-3}); do
  for c in $1 $2; do
    d=$(mktemp -d); git clone -q /work/main $d/r; cd $d/r; git checkout -q $c
    export NUMBA_CACHE_DIR=$d/cache
    s=$(date +%s.%N); make quickstart > $d/log 2>&1; rc=$?; e=$(date +%s.%N)
    echo "$c rc $rc wall $(echo "$e - $s" | bc) $(grep -o 'first run only)... [0-9.]* s' $d/log | tail -1) $(grep -o 'P@1 [0-9.]*' $d/log | tail -1)"
    cd /; rm -rf $d
  done
done
pip install -q -e /work/main --no-deps --no-build-isolation > /dev/null 2>&1
