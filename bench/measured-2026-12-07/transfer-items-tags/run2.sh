#!/bin/bash
# items: the recipe under 90 s with one setting changed each
cd /work/exp/s32
run() { name=$1; shift
  slidepy train --train data/items-train.txt --test data/items-test.txt --time-budget 90s --threads 2 --no-progress --out runs/items-$name --overwrite "$@" > items-$name.log 2>&1
  echo "$name $(grep '^step' items-$name.log | tail -1 | cut -c1-60)"; }
run lr4 --set training.lr=0.004
run lr8 --set training.lr=0.008
run lr1 --set training.lr=0.001
run drop5 --set model.dropout=0.5
run drop0 --set model.dropout=0
