"""Synthetic XC data: topics -> labels (Zipf popularity) -> features (label prototypes + topic + background)."""
import sys, json, time
import numpy as np

def gen(out, n_train, n_test, F, L, nnz, k_lo, k_hi, label_a=0.8, n_topics=500, proto=12,
        signal=0.5, binary=False, seed=0, feat_a=1.0):
    rng = np.random.default_rng(seed)
    t0 = time.time()
    # feature background popularity (Zipf), ids shuffled
    fr = 1.0 / (np.arange(F) + 10.0) ** feat_a
    fperm = rng.permutation(F); fp = np.empty(F); fp[fperm] = fr / fr.sum()
    fcdf = np.cumsum(fp)
    # label popularity
    lr_ = 1.0 / (np.arange(L) + 1.0) ** label_a
    lperm = rng.permutation(L); lp = np.empty(L); lp[lperm] = lr_ / lr_.sum()
    topic_of = rng.integers(0, n_topics, L)
    order = np.argsort(topic_of, kind="stable")
    tstart = np.searchsorted(topic_of[order], np.arange(n_topics + 1))
    tcdfs = []
    for t in range(n_topics):
        ls = order[tstart[t]:tstart[t + 1]]
        w = lp[ls]; tcdfs.append((ls, np.cumsum(w) / w.sum()))
    tw = np.array([lp[order[tstart[t]:tstart[t+1]]].sum() for t in range(n_topics)]); tw /= tw.sum()
    twc = np.cumsum(tw); lcdf = np.cumsum(lp)
    lproto = rng.integers(0, F, (L, proto))      # label prototypes: uniform features
    tproto = rng.integers(0, F, (n_topics, 4 * proto))
    n = n_train + n_test
    lines = []
    for i in range(n):
        t = min(int(np.searchsorted(twc, rng.random())), n_topics - 1)
        k = rng.integers(k_lo, k_hi + 1)
        ls, cdf = tcdfs[t]
        k_topic = max(1, int(round(k * 0.8)))
        labs = ls[np.minimum(np.searchsorted(cdf, rng.random(k_topic)), len(ls) - 1)]
        if k - k_topic > 0:
            labs = np.concatenate([labs, np.minimum(np.searchsorted(lcdf, rng.random(k - k_topic)), L - 1)])
        labs = np.unique(labs)
        m = rng.poisson(nnz)
        m = max(3, m)
        n_sig = int(m * signal)
        n_top = int(m * 0.2)
        n_bg = m - n_sig - n_top
        sig = lproto[rng.choice(labs, n_sig), rng.integers(0, proto, n_sig)]
        top = tproto[t, rng.integers(0, 4 * proto, n_top)]
        bg = np.minimum(np.searchsorted(fcdf, rng.random(n_bg)), F - 1)
        f, c = np.unique(np.concatenate([sig, top, bg]), return_counts=True)
        if binary:
            v = np.ones(len(f))
        else:
            v = (1 + np.log(c)) * np.clip(-np.log(fp[f] * F / 20), 1, None)
            v = v / np.linalg.norm(v)
        lines.append(",".join(map(str, labs)) + " " + " ".join(f"{a}:{b:.4g}" for a, b in zip(f, v)))
    for name, part in (("train", lines[:n_train]), ("test", lines[n_train:])):
        with open(f"{out}-{name}.txt", "w") as fh:
            fh.write(f"{len(part)} {F} {L}\n")
            fh.write("\n".join(part) + "\n")
    print(out, "done in", round(time.time() - t0, 1), "s", file=sys.stderr)

if __name__ == "__main__":
    kw = json.loads(sys.argv[2])
    gen(sys.argv[1], **kw)
