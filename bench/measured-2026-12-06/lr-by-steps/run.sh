#!/bin/bash
# The automatic recipe's learning rate for runs of more than 2 passes: LR (2e-3) as shipped against
# the rate a given --set names, on the sets where the plan has fewer than TARGET_STEPS steps.
# Usage: run.sh NAME DATA_DIR [slidepy train options...]; prints the final whole-split P@k.
cd "$(git rev-parse --show-toplevel)"
name=$1; d=../shared/data/$2; shift 2
OUT=${OUT:-runs/lr-by-steps}; mkdir -p $OUT
slidepy train --train $d/train.txt --test $d/test.txt --out $OUT/$name --overwrite --no-progress --threads 2 "$@" > $OUT/$name.log 2>&1
python - $OUT/$name $name <<'PY'
import json, sys, yaml
f = [r for r in map(json.loads, open(sys.argv[1] + "/metrics.jsonl")) if r["event"] == "eval"][-1]
c = yaml.safe_load(open(sys.argv[1] + "/config.yaml"))
print(sys.argv[2], "lr", c["training"]["lr"], "dropout", c["model"]["dropout"], "epochs", f.get("epoch"),
      "P@1/3/5 %.4f / %.4f / %.4f" % (f["P@1"], f["P@3"], f["P@5"]), "train %.1f + %.1f s" % (f["train_seconds"], f["rebuild_seconds"]))
PY
