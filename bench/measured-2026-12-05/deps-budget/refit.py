"""Experiment: refit the output layer by exact softmax on the final network's clean hidden vectors."""
import sys, time, numpy as np, torch
from slidepy.model import Model
from slidepy.data import load_dataset
torch.set_num_threads(2)
ck, mode, lr, epochs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
D = "/work/shared/data/DebianDeps/"
train, test = load_dataset(D + "train.txt"), load_dataset(D + "test.txt")
model, meta = Model.load(ck)
eng = model.engine
def report(tag):
    model.attach_neighbours(train); r = model.evaluate(test); model.detach_neighbours(); r2 = model.evaluate(test)
    print(tag, "votes", [round(r[f"P@{k}"], 4) for k in (1, 3, 5)], "alone", [round(r2[f"P@{k}"], 4) for k in (1, 3, 5)], flush=True)
report("before")
H = np.zeros((train.n_samples, eng.sizes[-1][0]), np.float32)
eng.last_hidden(train, np.arange(train.n_samples, dtype=np.int64), H)
out = eng.layers[-1]
W = torch.tensor(out.weights, requires_grad=(mode == "all")); b = torch.tensor(out.bias, requires_grad=True)
params = [W, b] if mode == "all" else [b]
opt = torch.optim.Adam(params, lr=lr)
Ht = torch.tensor(H); n = train.n_samples
yi, yp = train.y_indices, train.y_indptr
t0 = time.perf_counter(); steps = epochs * ((n + 127) // 128); s = 0
g = torch.Generator().manual_seed(0)
for ep in range(epochs):
    perm = torch.randperm(n, generator=g).numpy()
    for st in range(0, n, 128):
        rows = perm[st:st + 128]
        T = torch.zeros(len(rows), W.shape[0])
        for i, r in enumerate(rows):
            labs = yi[yp[r]:yp[r + 1]]
            if len(labs): T[i, torch.tensor(labs)] = 1.0 / len(labs)
        for pg in opt.param_groups: pg["lr"] = lr * (1 - s / steps)
        logits = Ht[rows] @ W.T + b
        loss = -(T * torch.log_softmax(logits, 1)).sum(1).mean()
        opt.zero_grad(); loss.backward(); opt.step(); s += 1
print("refit seconds", round(time.perf_counter() - t0, 1))
out.bias[:] = b.detach().numpy()
if mode == "all": out.weights[:] = W.detach().numpy()
report(f"after {mode} lr {lr} epochs {epochs}")
