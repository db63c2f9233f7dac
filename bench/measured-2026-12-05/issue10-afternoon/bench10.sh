#!/bin/bash
# Issue 10's checks on this code, one after the other, 2-core VM.
cd /work/main
R=/work/exp/s16/b10
mkdir -p $R
date -u +%FT%TZ > $R/started
python scripts/bench.py --out $R/nextword --datasets debian-nextword --systems slidepy,torch,omikuji,pecos --threads 2 --no-bandwidth --epochs 1 --repeats 3 --max-seconds 1600 > $R/nextword.log 2>&1
python scripts/bench.py --out $R/670k --datasets amazon670k --systems lsh,torch --threads 1,2 --no-accuracy --repeats 5 > $R/670k.log 2>&1
date -u +%FT%TZ > $R/done
