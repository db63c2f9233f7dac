"""Probe: layer 0 started from the label-feature co-occurrence's singular vectors (PIFA: each label
the normalised sum of its positives' tf-idf rows; the top R right singular vectors as +/- pairs of
hidden units), then the recipe's training as resolved in CONFIG. Usage:
python svdinit.py CONFIG RUN_DIR SCALE_FACTOR [R]"""
import json, sys, time
import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd
from slidepy.configfile import load_config
from slidepy.data import load_dataset
from slidepy.trainer import Trainer

cfg = load_config(sys.argv[1])
tr, te = load_dataset(cfg.data.train), load_dataset(cfg.data.test)
t0 = time.perf_counter()
H = cfg.model.hidden[0].size if hasattr(cfg.model.hidden[0], 'size') else cfg.model.hidden[0]
R = int(sys.argv[4]) if len(sys.argv) > 4 else H // 2
X = sp.csr_matrix((tr.x_values, tr.x_indices, tr.x_indptr), shape=(tr.n_samples, tr.n_features))
Y = sp.csr_matrix((np.ones_like(tr.y_indices, dtype=np.float32), tr.y_indices, tr.y_indptr), shape=(tr.n_samples, tr.n_labels))
Z = (Y.T @ X).tocsr()
n = np.sqrt(np.asarray(Z.multiply(Z).sum(1)).ravel()); n[n == 0] = 1
Z = sp.diags(1 / n) @ Z
_, s, Vt = randomized_svd(Z, R, random_state=0)
V = Vt.T.astype(np.float32)                     # features x R
init = np.concatenate([V, -V] * (H // (2 * R)), axis=1)
print(f"svd {time.perf_counter() - t0:.1f} s, top singular values {s[:3]}, last {s[-1]:.3f}", flush=True)
trainer = Trainer(cfg, train=tr, test=te, run_dir=sys.argv[2], progress=False)
W = trainer.engine.layers[0].weights
pre_rand = (X[:2000] @ W).std()
pre_svd = (X[:2000] @ init).std()
factor = float(sys.argv[3])
W[:] = init * (pre_rand / pre_svd * factor)
print(f"pre-activation std random {pre_rand:.4f}, svd {pre_svd:.4f}, scaled x{factor}", flush=True)
rec = trainer.fit()
ev = [r for r in trainer.history if r.get('event') == 'eval']
print(sys.argv[2], 'P@1/3/5 %.4f / %.4f / %.4f' % (rec['P@1'], rec['P@3'], rec['P@5']), 'train %.1f + %.1f s' % (rec['train_seconds'], rec['rebuild_seconds']),
      'curve', [(round(r['epoch'], 1), round(r['P@1'], 3)) for r in ev[:-1]], flush=True)
