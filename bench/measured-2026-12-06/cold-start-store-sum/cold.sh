#!/bin/bash
# Cold `make quickstart` from a fresh clone of HEAD, empty JIT cache: numpy-2 venv, then this VM's Python; twice each, alternating.
set -u
for i in 1 2 3 4; do
  for env in np2 vm; do
    d=$(mktemp -d); git clone -q /work/main $d/src
    cache=$d/cache
    if [ $env = np2 ]; then act="source /tmp/np2/venv/bin/activate"; else act=true; fi
    out=$(bash -c "$act && cd $d/src && NUMBA_CACHE_DIR=$cache /usr/bin/time -f 'wall %e s' make quickstart 2>&1" | grep -E "compiling kernels|^wall|P@1" | tr '\n' ' ')
    echo "$env $i: $out"
    rm -rf $d
  done
done
