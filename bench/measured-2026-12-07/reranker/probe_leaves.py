"""Probe: per-label linear leaves (L2-loss SVM by dual coordinate descent) re-ranking a trained
network's shortlist. Does it add to the network? Negatives: the samples of the label's cluster
(SPACE output or pifa, clusters of LEAF labels) or the samples whose network top Ks holds it
(SPACE short).
usage: probe_leaves.py RUN TRAIN TEST [LEAF] [SPACE] [Ks]"""
import sys, glob, time, numpy as np, scipy.sparse as sp
from numba import njit, prange
sys.path.insert(0, '/work/main/scripts')
from benchkit.worker import csr_features, csr_labels
from slidepy.data import load_dataset
from slidepy.model import Model
from slidepy.neighbours import blended_scores


@njit(cache=True)
def train_label(rows, xptr, xind, xval, pos_mark, stamp, w, alpha, qd, order, C, iters):
    n = rows.shape[0]
    D = 0.5 / C
    F = w.shape[0] - 1
    for i in range(n):
        alpha[i] = 0.0
        order[i] = i
    for it in range(iters):
        np.random.shuffle(order[:n])
        maxpg = 0.0
        for t in range(n):
            i = order[t]
            r = rows[i]
            y = 1.0 if pos_mark[r] == stamp else -1.0
            s = w[F]
            for p in range(xptr[r], xptr[r + 1]):
                s += w[xind[p]] * xval[p]
            G = y * s - 1.0 + D * alpha[i]
            PG = G if alpha[i] > 0 else min(G, 0.0)
            if abs(PG) > maxpg:
                maxpg = abs(PG)
            if abs(PG) > 1e-12:
                old = alpha[i]
                alpha[i] = max(alpha[i] - G / qd[i], 0.0)
                d = (alpha[i] - old) * y
                for p in range(xptr[r], xptr[r + 1]):
                    w[xind[p]] += d * xval[p]
                w[F] += d
        if maxpg < 0.1:
            break


@njit(parallel=True, cache=True)
def train_leaves(c_ptr, c_labels, s_ptr, s_rows, f_ptr, f_ids, yT_ptr, yT_ind, xptr, xind, xval, n_samples, F,
                 out_ptr, out_feat, out_w, out_n, C, iters, thr):
    n_c = c_ptr.shape[0] - 1
    for c in prange(n_c):
        rows = s_rows[s_ptr[c]:s_ptr[c + 1]]
        n = rows.shape[0]
        w = np.zeros(F + 1, np.float32)
        alpha = np.zeros(n, np.float64)
        order = np.zeros(n, np.int64)
        qd = np.empty(n, np.float64)
        pos_mark = np.full(n_samples, -1, np.int64)
        for i in range(n):
            r = rows[i]
            s = 1.0
            for p in range(xptr[r], xptr[r + 1]):
                s += xval[p] * xval[p]
            qd[i] = s + 0.5 / C
        feats = f_ids[f_ptr[c]:f_ptr[c + 1]]
        for j in range(c_ptr[c], c_ptr[c + 1]):
            l = c_labels[j]
            for p in range(yT_ptr[l], yT_ptr[l + 1]):
                pos_mark[yT_ind[p]] = l
            train_label(rows, xptr, xind, xval, pos_mark, l, w, alpha, qd, order, C, iters)
            k = out_ptr[l]
            for f in feats:
                if abs(w[f]) > thr:
                    out_feat[k] = f
                    out_w[k] = w[f]
                    k += 1
                w[f] = 0.0
            out_feat[k] = F  # the bias
            out_w[k] = w[F]
            k += 1
            w[F] = 0.0
            out_n[l] = k - out_ptr[l]


@njit(parallel=True, cache=True)
def train_leaves_by_label(l_ptr, l_rows, yT_ptr, yT_ind, xptr, xind, xval, n_samples, F,
                          out_ptr, out_feat, out_w, out_n, C, iters, thr, n_chunks):
    N = l_ptr.shape[0] - 1
    maxn = 0
    for l in range(N):
        maxn = max(maxn, l_ptr[l + 1] - l_ptr[l])
    for ch in prange(n_chunks):
        w = np.zeros(F + 1, np.float32)
        seen = np.full(F, -1, np.int64)
        alpha = np.zeros(maxn, np.float64)
        order = np.zeros(maxn, np.int64)
        qd = np.empty(maxn, np.float64)
        pos_mark = np.full(n_samples, -1, np.int64)
        for l in range(ch, N, n_chunks):
            rows = l_rows[l_ptr[l]:l_ptr[l + 1]]
            n = rows.shape[0]
            for i in range(n):
                r = rows[i]
                s = 1.0
                for p in range(xptr[r], xptr[r + 1]):
                    s += xval[p] * xval[p]
                qd[i] = s + 0.5 / C
            for p in range(yT_ptr[l], yT_ptr[l + 1]):
                pos_mark[yT_ind[p]] = l
            train_label(rows, xptr, xind, xval, pos_mark, l, w, alpha, qd, order, C, iters)
            k = out_ptr[l]
            for i in range(n):
                r = rows[i]
                for p in range(xptr[r], xptr[r + 1]):
                    f = xind[p]
                    if seen[f] != l:
                        seen[f] = l
                        if abs(w[f]) > thr:
                            out_feat[k] = f
                            out_w[k] = w[f]
                            k += 1
                        w[f] = 0.0
            out_feat[k] = F
            out_w[k] = w[F]
            k += 1
            w[F] = 0.0
            out_n[l] = k - out_ptr[l]


@njit(parallel=True, cache=True)
def score_shortlist(rows, xptr, xind, xval, short, lptr, lfeat, lw, F, out):
    for a in prange(rows.shape[0]):
        dense = np.zeros(F + 1, np.float32)
        r = rows[a]
        for p in range(xptr[r], xptr[r + 1]):
            dense[xind[p]] = xval[p]
        dense[F] = 1.0
        for j in range(short.shape[1]):
            l = short[a, j]
            s = 0.0
            for p in range(lptr[l], lptr[l + 1]):
                s += lw[p] * dense[lfeat[p]]
            out[a, j] = s


def spherical_kmeans(rows, k, iters=8, seed=0):
    rng = np.random.default_rng(seed)
    u = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)
    cen = u[rng.choice(len(u), k, replace=False)]
    for _ in range(iters):
        a = np.argmax(u @ cen.T, 1)
        cen = np.zeros_like(cen); np.add.at(cen, a, u)
        empty = np.linalg.norm(cen, axis=1) == 0
        cen[empty] = u[rng.choice(len(u), empty.sum(), replace=False)]
        cen /= np.linalg.norm(cen, axis=1, keepdims=True)
    return np.argmax(u @ cen.T, 1)


def main():
    run, trp, tep = sys.argv[1:4]
    leaf = int(sys.argv[4]) if len(sys.argv) > 4 else 100
    space = sys.argv[5] if len(sys.argv) > 5 else "output"
    tr, te = load_dataset(trp), load_dataset(tep)
    X, Y = csr_features(tr, normalize=True), csr_labels(tr)
    X.sort_indices()
    B, F = X.shape; N = Y.shape[1]
    model = Model.load(sorted(glob.glob(f"{run}/checkpoints/*"))[-1])[0]
    model.attach_neighbours(tr)
    eng = model.engine; bank = eng.neighbours; out = eng.layers[-1]
    W = np.asarray(out.weights)
    if W.shape[0] != N: W = W.T
    if space == "short":  # negatives: the samples whose network top Ks holds the label
        t0 = time.perf_counter()
        Ks = int(sys.argv[6]) if len(sys.argv) > 6 else 50
        short_rows, short_cols = [], []
        for s in range(0, B, 2000):
            rows = np.arange(s, min(B, s + 2000), dtype=np.int64)
            h = np.zeros((len(rows), eng.sizes[-1][0]), np.float32); eng.last_hidden(tr, rows, h)
            z = h @ W.T + np.asarray(out.bias)[None, :]
            top = np.argpartition(-z, Ks, 1)[:, :Ks]
            short_rows.append(np.repeat(rows, Ks)); short_cols.append(top.ravel())
        Sh = sp.csr_matrix((np.ones(B * Ks, np.float32), (np.concatenate(short_rows), np.concatenate(short_cols))), shape=(B, N))
        U = (Sh + Y).T.tocsr(); U.sort_indices()
        t1 = time.perf_counter()
        YT = Y.T.tocsr(); YT.sort_indices()
        nnz_row = np.diff(X.indptr).astype(np.float64)
        sizes = (U.astype(bool).astype(np.float64) @ nnz_row).astype(np.int64) + 1
        out_ptr = np.zeros(N + 1, np.int64); out_ptr[1:] = np.cumsum(sizes)
        print(f"training shortlists (top {Ks}) in {t1 - t0:.1f} s; rows/label {np.diff(U.indptr).mean():.0f}; bound {out_ptr[-1] / 1e6:.1f} M", flush=True)
        out_feat = np.empty(out_ptr[-1], np.int64); out_w = np.empty(out_ptr[-1], np.float32); out_n = np.zeros(N, np.int64)
        t2 = time.perf_counter()
        train_leaves_by_label(U.indptr.astype(np.int64), U.indices.astype(np.int64), YT.indptr.astype(np.int64), YT.indices.astype(np.int64),
                     X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data.astype(np.float32), B, F,
                     out_ptr, out_feat, out_w, out_n, 1.0, 20, 0.1, 64)
        t3 = time.perf_counter()
    else:  # negatives: the samples of the label's cluster (output rows or PIFA)
        t0 = time.perf_counter()
        k = max(1, -(-N // leaf))
        if space == "output":
            assign = spherical_kmeans(W.astype(np.float32), k)
        else:  # pifa: label centroids in input space
            P = (Y.T @ X).tocsr()
            from sklearn.decomposition import TruncatedSVD
            E = TruncatedSVD(256, random_state=0).fit_transform(P).astype(np.float32)
            assign = spherical_kmeans(E, k)
        t1 = time.perf_counter()
        c_labels = np.argsort(assign, kind="stable").astype(np.int64)
        c_ptr = np.zeros(k + 1, np.int64); c_ptr[1:] = np.cumsum(np.bincount(assign, minlength=k))
        YT = Y.T.tocsr(); YT.sort_indices()
        # samples per cluster, features per cluster
        A = sp.csr_matrix((np.ones(N), assign, np.arange(N + 1)), shape=(N, k))  # label -> cluster
        SC = (Y @ A).T.tocsr(); SC.sort_indices()  # cluster x sample
        FC = (SC @ (X != 0).astype(np.float32)).tocsr(); FC.sort_indices()  # cluster x feature
        s_ptr, s_rows = SC.indptr.astype(np.int64), SC.indices.astype(np.int64)
        f_ptr, f_ids = FC.indptr.astype(np.int64), FC.indices.astype(np.int64)
        sizes = np.diff(f_ptr)[assign] + 1
        out_ptr = np.zeros(N + 1, np.int64); out_ptr[1:] = np.cumsum(sizes)
        print(f"clusters {k} ({space}) in {t1 - t0:.1f} s; samples/cluster {np.diff(s_ptr).mean():.0f}; bound {out_ptr[-1] / 1e6:.1f} M", flush=True)
        out_feat = np.empty(out_ptr[-1], np.int64); out_w = np.empty(out_ptr[-1], np.float32); out_n = np.zeros(N, np.int64)
        t2 = time.perf_counter()
        train_leaves(c_ptr, c_labels, s_ptr, s_rows, f_ptr, f_ids, YT.indptr.astype(np.int64), YT.indices.astype(np.int64),
                     X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data.astype(np.float32), B, F,
                     out_ptr, out_feat, out_w, out_n, 1.0, 20, 0.1)
        t3 = time.perf_counter()
    keep = np.concatenate([np.arange(out_ptr[l], out_ptr[l] + out_n[l]) for l in range(N)])
    lptr = np.zeros(N + 1, np.int64); lptr[1:] = np.cumsum(out_n)
    lfeat, lw = out_feat[keep], out_w[keep]
    print(f"leaves trained in {t3 - t2:.1f} s (incl. compile); {lptr[-1] / 1e6:.2f} M weights", flush=True)
    Xt = csr_features(te, normalize=True); Xt.sort_indices()
    rows_all = np.sort(np.random.default_rng(0).choice(te.n_samples, min(5000, te.n_samples), replace=False)).astype(np.int64)
    Yte = sp.csr_matrix((np.ones(len(te.y_indices), np.float32), te.y_indices, te.y_indptr), shape=(te.n_samples, N))
    K = 50
    combos = [("net", None, None)] + [("lin", "geo", a) for a in (0.2, 0.35, 0.5, 0.65, 0.8, 1.0)] + \
             [("lin", "sum", a) for a in (0.2, 0.35, 0.5)]
    hits = {c: np.zeros(3) for c in combos}
    for s in range(0, len(rows_all), 500):
        rows = rows_all[s:s + 500]
        h = np.zeros((len(rows), eng.sizes[-1][0]), np.float32); eng.last_hidden(te, rows, h)
        base = blended_scores(h, out.weights, out.bias, bank, te, rows)
        short = np.argsort(-base, 1)[:, :K].astype(np.int64)
        pb = np.take_along_axis(base, short, 1)
        lin = np.zeros(short.shape, np.float32)
        score_shortlist(rows, Xt.indptr.astype(np.int64), Xt.indices.astype(np.int64), Xt.data.astype(np.float32),
                        short, lptr, lfeat, lw, F, lin)
        r = np.exp(-np.maximum(1 - lin, 0) ** 3)
        Ysh = np.take_along_axis(Yte[rows].toarray(), short, 1)
        for c in combos:
            if c[0] == "net": S = pb
            elif c[1] == "geo": S = np.log(np.maximum(pb, 1e-12)) * (1 - c[2]) + np.log(np.maximum(r, 1e-12)) * c[2]
            else: S = (1 - c[2]) * pb / pb.sum(1, keepdims=True) + c[2] * r / r.sum(1, keepdims=True)
            top = np.argsort(-S, 1, kind="stable")[:, :5]; rel = np.take_along_axis(Ysh, top, 1) > 0
            for j, kk in enumerate((1, 3, 5)): hits[c][j] += rel[:, :kk].sum() / kk
    for c, v in hits.items(): print(c, np.round(v / len(rows_all), 4), flush=True)


main()
