#!/bin/bash
cd /work/exp/s32
run() { name=$1; shift
  slidepy train --train data/items-train.txt --test data/items-test.txt --time-budget 90s --threads 2 --no-progress --out runs/items-$name --overwrite "$@" > items-$name.log 2>&1
  echo "$name $(grep '^step' items-$name.log | tail -1 | cut -c1-60)"; }
run h1024 --set 'model.hidden=[1024]'
run h256 --set 'model.hidden=[256]'
python votes.py runs/auto-tags data/tags-train.txt data/tags-test.txt > votes-tags.log 2>&1
