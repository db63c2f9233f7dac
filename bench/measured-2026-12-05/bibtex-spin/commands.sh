# Bibtex: trees, the shipped config three times (with the GOMP_SPINCOUNT default), trees again; 2 threads.
cd /work/main
R=/work/exp/s19/bibtex-spin
python scripts/bench.py --datasets bibtex --systems omikuji,pecos --threads 2 --out $R/trees-1 --no-bandwidth > $R/trees-1.log 2>&1
for i in 1 2 3; do
  slidepy train --config configs/bibtex.yaml --set output.run_dir=$R/cfg-$i --set eval.subset=null --overwrite --no-progress > $R/cfg-$i.log 2>&1
done
python scripts/bench.py --datasets bibtex --systems omikuji,pecos --threads 2 --out $R/trees-2 --no-bandwidth > $R/trees-2.log 2>&1
