#!/bin/bash
# Same-hour standing on HEAD (2026-12-06, session 23), 2 threads, whole test splits: the trees on
# all four sets, the four configs (DebianNextWord's: 1 epoch), the automatic recipe on the four.
cd /work/main
R=${R:-/work/exp/s23/sh9}
mkdir -p $R
git rev-parse --short HEAD > $R/commit
date -u +%FT%TZ > $R/started
python scripts/bench.py --datasets bibtex,delicious,debian-deps,debian-nextword --systems omikuji,pecos --threads 2 --out $R/trees --no-bandwidth --no-cold-start > $R/trees.log 2>&1
for d in bibtex delicious debian-deps debian-nextword; do
  slidepy train --config configs/$d.yaml --set output.run_dir=$R/cfg-$d --set eval.subset=null --overwrite --no-progress > $R/cfg-$d.log 2>&1
done
for d in Bibtex Delicious DebianDeps DebianNextWord; do
  slidepy train --train ../shared/data/$d/train.txt --test ../shared/data/$d/test.txt --out $R/auto-$d --overwrite --no-progress > $R/auto-$d.log 2>&1
done
date -u +%FT%TZ > $R/done
