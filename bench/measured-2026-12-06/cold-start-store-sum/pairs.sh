#!/bin/bash
# Cold quick start (empty JIT cache, compile helper on), old code (HEAD before the change) and new, interleaved.
for i in 1 2 3; do
  for which in old new; do
    if [ $which = old ]; then src=/tmp/old; else src=/work/main; fi
    out=$(cd $src && PYTHONPATH=$src python scripts/compile_times.py --config configs/quickstart.yaml --json /work/exp/s27/ct-$which-$i.json 2>&1 | tail -1)
    echo "$which $i: $out"
  done
done
