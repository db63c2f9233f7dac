#!/bin/bash
# The recipe with the votes' space chosen by leave-one-out (space auto), 2026-12-07, 2-core VM.
cd /work/exp/s31
D=/work/shared/data
date -u
for s in Bibtex Delicious DebianDeps; do
  /usr/bin/time -v slidepy train --train $D/$s/train.txt --test $D/$s/test.txt --no-progress --out auto-$s --overwrite > auto-$s.log 2>&1
done
date -u
/usr/bin/time -v slidepy train --train data/longtail-train.txt --test data/longtail-test.txt --time-budget 90s --no-progress --out auto-longtail --overwrite > auto-longtail.log 2>&1
date -u
python trees.py data/longtail-train.txt data/longtail-test.txt omikuji,pecos > trees-longtail.txt 2>&1
date -u
