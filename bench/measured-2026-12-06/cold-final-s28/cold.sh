#!/bin/bash
# Cold `make quickstart` in the numpy-2 venv, fresh clones of the session's first commit (ed35eb3) and of HEAD, interleaved.
set -u
source /tmp/np2/venv/bin/activate
for i in 1 2 3; do
  for rev in ed35eb3 HEAD; do
    d=$(mktemp -d); git clone -q /work/main $d/src; (cd $d/src && git checkout -q $rev)
    out=$(cd $d/src && NUMBA_CACHE_DIR=$d/cache /usr/bin/time -f 'wall %e s' make quickstart 2>&1 | grep -E "compiling kernels|^wall|^step" | cut -c1-40 | tr '\n' ' ')
    echo "$rev $i: $out"
    rm -rf $d
  done
done
