#!/bin/bash
# DebianDeps' training split cut to a half and a quarter: the trees, the recipe at this code and at f22a9e3 (/work/old)
cd /work/main
for n in 50 25; do
  OUT=/work/exp/s36/fewer GEN=/work/exp/s35/data bash bench/measured-2026-12-07/depth/run.sh "deps$n /work/exp/s36/deps$n/train.txt /work/exp/s36/deps$n/test.txt"
  (cd /work/old && PYTHONPATH=/work/old python -m slidepy train --train /work/exp/s36/deps$n/train.txt --test /work/exp/s36/deps$n/test.txt --out /work/exp/s36/fewer/old-recipe-deps$n --overwrite --no-progress --threads 2 2>&1 | tail -1 | cut -c1-70 | sed "s/^/deps$n recipe at f22a9e3: /")
done
