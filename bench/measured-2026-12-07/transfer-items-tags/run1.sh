#!/bin/bash
cd /work/exp/s32
for s in items tags; do
  /usr/bin/time -v python trees.py data/$s-train.txt data/$s-test.txt pecos,omikuji > trees-$s.log 2>&1
  /usr/bin/time -v slidepy train --train data/$s-train.txt --test data/$s-test.txt --time-budget 90s --threads 2 --no-progress --out runs/auto-$s --overwrite > auto-$s.log 2>&1
done
