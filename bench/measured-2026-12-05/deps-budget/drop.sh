for spec in "0.6 15" "0.6 20"; do set -- $spec
  slidepy train --train /work/shared/data/DebianDeps/train.txt --test /work/shared/data/DebianDeps/test.txt --out runs/deps-d$1-e$2 --overwrite --no-progress --threads 2 --set model.dropout=$1 --set training.epochs=$2 > /dev/null 2>&1
  echo "dropout $1 epochs $2" $(tail -1 runs/deps-d$1-e$2/metrics.jsonl | cut -c1-330)
done
