#!/bin/bash
# MNIST (configs/mnist.yaml: 2 hidden layers of 1,024, 256 active by SRP LSH): LSH against uniform
# choice of the same budget, and all units, interleaved; prints the final metrics line of each run.
cd "$(git rev-parse --show-toplevel)"
mkdir -p "${OUT:-runs/mnist-hidden-lsh}"
for epochs in 1 3; do for seed in 0 1; do for mode in lsh random all; do
  out=${OUT:-runs/mnist-hidden-lsh}/$mode-e$epochs-s$seed
  sets=(--set training.epochs=$epochs --set training.seed=$seed)
  if [ $mode != lsh ]; then sets+=(--set model.hidden.0.selection.mode=$mode --set model.hidden.1.selection.mode=$mode); fi
  slidepy train --config configs/mnist.yaml --out $out --overwrite --no-progress --threads 2 "${sets[@]}" > $out.log 2>&1
  python - "$out" "$mode" "$epochs" "$seed" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
ev = [r for r in recs if r["event"] == "eval"][-1]
logs = [r for r in recs if r["event"] == "log"]
print(f"mode={sys.argv[2]} epochs={sys.argv[3]} seed={sys.argv[4]} P@1={ev['P@1']:.4f} train_s={ev['train_seconds']:.1f} "
      f"active={[round(a) for a in logs[-1]['active_mean']]}")
PY
done; done; done
