#!/bin/bash
# DebianDeps' config again, alone on the machine (its first run in commands.sh overlapped a 30 s
# test run), then the trees on DebianDeps right after it.
cd /work/main
R=${R:-/work/exp/s20/sh8b}
mkdir -p $R
date -u +%FT%TZ > $R/started
slidepy train --config configs/debian-deps.yaml --set output.run_dir=$R/cfg-debian-deps --set eval.subset=null --overwrite --no-progress > $R/cfg-debian-deps.log 2>&1
python scripts/bench.py --datasets debian-deps --systems omikuji,pecos --threads 2 --out $R/trees-deps --no-bandwidth > $R/trees.log 2>&1
date -u +%FT%TZ > $R/done
