#!/bin/bash
cd /work/main
SP=/work/exp/sp
R=/work/exp/s10/final
mkdir -p $R
for d in bibtex delicious debian-deps; do
  $SP train --config configs/$d.yaml --set output.run_dir=$R/cfg-$d --set eval.subset=null --overwrite --no-progress > $R/cfg-$d.log 2>&1
done
for d in Bibtex Delicious DebianDeps; do
  $SP train --train ../shared/data/$d/train.txt --test ../shared/data/$d/test.txt --out $R/rec-$d --overwrite --no-progress > $R/rec-$d.log 2>&1
done
python scripts/bench.py --datasets bibtex,delicious,debian-deps --systems omikuji,pecos --threads 2 --out $R/trees --no-bandwidth > $R/trees.log 2>&1
touch $R/done
