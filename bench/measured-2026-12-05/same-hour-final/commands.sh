#!/bin/bash
# Same-hour check of the final code (no huge pages, gated prefetch), 2 threads, whole test splits.
cd /work/main
R=/work/exp/s13/final3
mkdir -p $R
for d in bibtex delicious debian-deps debian-nextword; do
  slidepy train --config configs/$d.yaml --set output.run_dir=$R/cfg-$d --set eval.subset=null --overwrite --no-progress > $R/cfg-$d.log 2>&1
done
python scripts/bench.py --datasets bibtex,delicious,debian-deps,debian-nextword --systems omikuji,pecos --threads 2 --out $R/trees --no-bandwidth > $R/trees.log 2>&1
touch $R/done
