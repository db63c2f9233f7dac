"""A dense, non-text-like proxy: DebianDeps' tf-idf rows reduced to 256-d LSA embeddings (truncated
SVD fitted on train), written in XC format with all 256 features per row."""
import numpy as np, scipy.sparse as sp, sys, time
from scipy.sparse.linalg import svds
sys.path.insert(0, '/work/main')
from slidepy.data import load_dataset  # noqa
t=time.time()
D='/work/shared/data/DebianDeps/'
def read(path):
    with open(path) as f:
        n, F, L = map(int, f.readline().split())
        rows, cols, vals, labels = [], [], [], []
        for i, line in enumerate(f):
            parts = line.rstrip('\n').split(' ')
            lab = parts[0]
            labels.append(lab)
            for tok in parts[1:]:
                if not tok: continue
                a, b = tok.split(':'); rows.append(i); cols.append(int(a)); vals.append(float(b))
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, F)), labels, L
Xtr, Ytr, L = read(D+'train.txt'); Xte, Yte, _ = read(D+'test.txt')
print('read', time.time()-t, Xtr.shape)
u, s, vt = svds(Xtr.astype(np.float64), k=256, random_state=0)
P = vt.T  # F x 256
Etr, Ete = np.asarray(Xtr @ P), np.asarray(Xte @ P)
print('svd', time.time()-t, float(np.linalg.norm(Etr, axis=1).mean()))
def write(path, E, Y):
    with open(path, 'w') as f:
        f.write(f"{E.shape[0]} {E.shape[1]} {L}\n")
        for e, y in zip(E, Y):
            f.write(y + ' ' + ' '.join(f"{j}:{v:.5g}" for j, v in enumerate(e)) + '\n')
write('lsa-train.txt', Etr, Ytr); write('lsa-test.txt', Ete, Yte)
print('done', time.time()-t)
