"""1 vs 2 threads at the 670K bench shape, alternating segments in one process: where the time goes."""
import sys, time, numpy as np
sys.path.insert(0, '/work/main/scripts')
import bench, slidepy
nf, nl, nnz, lps = bench.SYNTHETIC_SHAPES['amazon670k']
train, test = slidepy.make_synthetic(10000, 100, nf, nl, nnz_per_sample=nnz, labels_per_sample=lps, noise_fraction=0.2, seed=0)
r = bench.SlidepyRunner('lsh', train, test, {"threads": 2, "lr": 1e-3, "batch_size": 128, "seed": 0})
for _ in range(30): r.step()
tot = {1: {}, 2: {}}
for rnd in range(int(sys.argv[1]) if len(sys.argv) > 1 else 4):
    for t in (1, 2):
        bench._set_threads(t)
        t0 = r.timings(); w0 = time.perf_counter(); n = 0
        while time.perf_counter() - w0 < 5.0:
            r.step(); n += 1
        w = time.perf_counter() - w0; t1 = r.timings()
        d = {k: t1[k] - t0[k] for k in t0}
        d['wall'] = w; d['steps'] = n
        for k, v in d.items(): tot[t][k] = tot[t].get(k, 0) + v
        print(rnd, t, f"{n*128/w:,.0f} sps", {k: round(v / n * 1000, 2) for k, v in d.items() if k != 'steps'}, flush=True)
for t in (1, 2):
    n = tot[t]['steps']
    print('per step ms', t, {k: round(v / n * 1000, 2) for k, v in tot[t].items() if k != 'steps'})
