#!/bin/bash
# The recipe under a 90 s budget on the generated long-tail set, with the new first rebuild
# interval and with the old one (50), one after the other.
cd /work/exp/s30
for arm in new old; do
  extra=()
  [ "$arm" = old ] && extra=(--set model.output.selection.lsh.rebuild.initial_interval=50)
  /usr/bin/time -v slidepy train --train longtail/longtail-train.txt --test longtail/longtail-test.txt \
    --time-budget 90s --threads 2 --no-progress --out runs/ramp-$arm --overwrite "${extra[@]}" > ramp-$arm.log 2>&1
  echo "rc $?" >> ramp-$arm.log
done
