#!/bin/bash
# Same-hour standing on this session's code (2026-12-06 early morning, e855e12), 2 threads, whole test splits: trees, the four configs (DebianNextWord's: 1 epoch),
# the automatic recipe on the four sets, the other trees.
cd /work/main
R=${R:-/work/exp/s20/sh8}
mkdir -p $R
date -u +%FT%TZ > $R/started
python scripts/bench.py --datasets bibtex,debian-deps --systems omikuji,pecos --threads 2 --out $R/trees-bibtex-deps --no-bandwidth > $R/trees1.log 2>&1
for d in bibtex delicious debian-deps debian-nextword; do
  slidepy train --config configs/$d.yaml --set output.run_dir=$R/cfg-$d --set eval.subset=null --overwrite --no-progress > $R/cfg-$d.log 2>&1
done
for d in Bibtex Delicious DebianDeps DebianNextWord; do
  slidepy train --train ../shared/data/$d/train.txt --test ../shared/data/$d/test.txt --out $R/auto-$d --overwrite --no-progress > $R/auto-$d.log 2>&1
done
python scripts/bench.py --datasets delicious,debian-nextword --systems omikuji,pecos --threads 2 --out $R/trees-delicious-nextword --no-bandwidth > $R/trees2.log 2>&1
date -u +%FT%TZ > $R/done
# Afterwards, in this directory: P@1 / P@5 against training seconds, config against recipe
# (the recipe's points before its last are 2,000-sample subsets, hence above its whole-split end):
#   slidepy plot cfg-<data> auto-<Data> --out curves-<data>.png
