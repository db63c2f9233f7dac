#!/bin/bash
# DebianDeps on the evening's engine (centroid scores by one product on the per-sample path), 2 threads,
# whole test split: the trees, the shipped config, the automatic recipe, one after the other.
cd /work/main
R=${R:-/work/exp/s18/sh6}
mkdir -p $R
date -u +%FT%TZ > $R/started
python scripts/bench.py --datasets debian-deps --systems omikuji,pecos --threads 2 --out $R/trees-deps --no-bandwidth > $R/trees.log 2>&1
slidepy train --config configs/debian-deps.yaml --set output.run_dir=$R/cfg-debian-deps --set eval.subset=null --overwrite --no-progress > $R/cfg-debian-deps.log 2>&1
slidepy train --train ../shared/data/DebianDeps/train.txt --test ../shared/data/DebianDeps/test.txt --out $R/auto-DebianDeps --overwrite --no-progress > $R/auto-DebianDeps.log 2>&1
date -u +%FT%TZ > $R/done
