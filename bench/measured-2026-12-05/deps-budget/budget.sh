set -x
for b in 256 384 640; do
  /usr/bin/time -v slidepy train --train /work/main/../shared/data/DebianDeps/train.txt --test /work/main/../shared/data/DebianDeps/test.txt --out runs/deps-b$b --overwrite --no-progress --threads 2 --set model.output.selection.budget=$b 2>&1 | grep -E "P@1|Maximum resident|Elapsed" 
  tail -1 runs/deps-b$b/metrics.jsonl | cut -c1-400
done
