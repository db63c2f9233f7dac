#!/bin/bash
# Same-hour comparison on the 2-core VM, 2 threads: trees, shipped configs, automatic recipe, trees.
cd /work/main
R=/work/exp/s13/final
mkdir -p $R
python scripts/bench.py --datasets bibtex,delicious,debian-deps --systems omikuji,pecos --threads 2 --out $R/trees-before --no-bandwidth > $R/trees-before.log 2>&1
for d in bibtex delicious debian-deps; do
  slidepy train --config configs/$d.yaml --set output.run_dir=$R/cfg-$d --set eval.subset=null --overwrite --no-progress > $R/cfg-$d.log 2>&1
done
for d in Bibtex Delicious DebianDeps; do
  slidepy train --train ../shared/data/$d/train.txt --test ../shared/data/$d/test.txt --out $R/rec-$d --overwrite --no-progress > $R/rec-$d.log 2>&1
done
python scripts/bench.py --datasets bibtex,delicious,debian-deps --systems omikuji,pecos --threads 2 --out $R/trees-after --no-bandwidth > $R/trees-after.log 2>&1
touch $R/done
slidepy train --config configs/debian-nextword.yaml --set output.run_dir=$R/cfg-debian-nextword --overwrite --no-progress > $R/cfg-debian-nextword.log 2>&1
python scripts/bench.py --datasets debian-nextword --systems omikuji,pecos --threads 2 --out $R/trees-nw --no-bandwidth > $R/trees-nw.log 2>&1
