cd /work/main
for v in "X=1" "GOMP_SPINCOUNT=5000" "X=1" "GOMP_SPINCOUNT=5000"; do
  n=$((n+1))
  env $v python scripts/bench.py --out /work/exp/s19/spin-$n --datasets amazon670k --systems lsh --threads 1,2 --no-accuracy --no-bandwidth --repeats 3 > /work/exp/s19/spin-$n.log 2>&1
  echo "$n $v $(grep -o 'lsh | [0-9,.]* | [0-9,.]* | 2t [0-9.]*' /work/exp/s19/spin-$n/results.md) $(grep -o 'steps [0-9.]*, rebuild [0-9.]*' /work/exp/s19/spin-$n/results.md | head -1)"
done
