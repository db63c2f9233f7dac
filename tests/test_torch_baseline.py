"""Tests of the PyTorch baseline (scripts/torch_baseline.py); skipped when torch is missing."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "torch_baseline.py"
_spec = importlib.util.spec_from_file_location("torch_baseline", _SCRIPT)
tb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tb)


@dataclass
class StandIn:
    """The fields of slidepy.data.Dataset that the baseline uses."""
    x_indptr: np.ndarray
    x_indices: np.ndarray
    x_values: np.ndarray
    y_indptr: np.ndarray
    y_indices: np.ndarray
    n_features: int
    n_labels: int

    @property
    def n_samples(self) -> int:
        return len(self.x_indptr) - 1


def _csr(rows, dtype):
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    flat = np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if rows else np.zeros(0, dtype)
    return indptr, flat.astype(dtype)


def _toy(n, n_features=40, n_labels=12, seed=0, empty_every=0):
    """Learnable toy problem: label l is signalled by features {3l, 3l+1}; some noise features."""
    rng = np.random.default_rng(seed)
    xs, vs, ys = [], [], []
    for i in range(n):
        labs = sorted(rng.choice(n_labels, size=rng.integers(1, 3), replace=False).tolist())
        feats = set()
        for l in labs:
            feats.update((3 * l, 3 * l + 1))
        feats.update(rng.choice(n_features, size=2).tolist())
        feats = sorted(feats)
        xs.append(feats)
        vs.append(rng.uniform(0.5, 1.5, size=len(feats)))
        ys.append([] if empty_every and i % empty_every == 0 else labs)
    xp, xi = _csr(xs, np.int32)
    _, xv = _csr(vs, np.float32)
    yp, yi = _csr(ys, np.int32)
    return StandIn(xp, xi, xv, yp, yi, n_features, n_labels)


def test_gather_csr_matches_dense():
    ds = _toy(30, seed=1)
    dense = np.zeros((30, ds.n_features), np.float32)
    for i in range(30):
        s, e = ds.x_indptr[i], ds.x_indptr[i + 1]
        dense[i, ds.x_indices[s:e]] = ds.x_values[s:e]
    rows = np.array([5, 0, 29, 5, 17])
    p, idx, val = tb.gather_csr(ds.x_indptr, ds.x_indices, ds.x_values, rows)
    got = np.zeros((len(rows), ds.n_features), np.float32)
    for i in range(len(rows)):
        got[i, idx[p[i]:p[i + 1]]] = val[p[i]:p[i + 1]]
    np.testing.assert_array_equal(got, dense[rows])


def test_precision_at_k_xc_definition():
    top = np.array([[0, 1, 2, 3, 4], [9, 8, 7, 6, 5], [1, 2, 3, 4, 5]])
    yp = np.array([0, 2, 3, 3])  # sample 2 has no labels: counts as 0
    yi = np.array([0, 3, 5])
    p = tb.precision_at_k(top, yp, yi)
    assert p["P@1"] == pytest.approx(1 / 3)
    assert p["P@3"] == pytest.approx((1 / 3) / 3)
    assert p["P@5"] == pytest.approx((2 / 5 + 1 / 5) / 3)


def test_loss_is_uniform_target_cross_entropy_and_skips_empty():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 7, generator=g)
    yp = np.array([0, 2, 2, 3, 6])
    yi = np.array([1, 4, 0, 2, 3, 6])
    target = torch.zeros(4, 7)
    for i in range(4):
        lab = yi[yp[i]:yp[i + 1]]
        if len(lab):
            target[i, lab] = 1.0 / len(lab)
    keep = [0, 2, 3]
    ref = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    got = tb._loss(logits, yp, yi)
    assert float(got) == pytest.approx(float(ref), rel=1e-5)
    assert tb._loss(logits, np.zeros(5, np.int64), np.zeros(0, np.int32)) is None


def test_first_layer_implementations_agree():
    ds = _toy(16, seed=2)
    params = tb._build_model(ds.n_features, ds.n_labels, 8, seed=0)
    rows = np.arange(16)
    outs = {}
    for fl in ("embbag", "sparse_mm", "sparse_mm_coo"):
        xin, _, _ = tb._to_torch_batch(ds, rows, fl)
        outs[fl] = tb._first_layer(params, xin, fl).detach().numpy()
    np.testing.assert_allclose(outs["embbag"], outs["sparse_mm"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs["embbag"], outs["sparse_mm_coo"], rtol=1e-5, atol=1e-6)


def test_train_torch_learns_toy_problem():
    train, test = _toy(600, seed=3, empty_every=50), _toy(200, seed=4)
    seen = []
    res = tb.train_torch(train, test, hidden=32, batch_size=32, lr=1e-2, epochs=4, threads=1,
                         eval_every_steps=25, eval_subset=100, callback=seen.append)
    for key in ("samples_per_s", "train_seconds", "steps", "curve", "P@1", "P@3", "P@5",
                "peak_rss_mb"):
        assert key in res
    assert res["steps"] == 4 * 19
    assert res["samples_per_s"] > 0 and res["peak_rss_mb"] > 0
    assert [p["step"] for p in res["curve"]] == [25, 50, 75, 76]
    assert seen == res["curve"]
    assert set(res["curve"][0]) == {"train_seconds", "step", "P@1", "P@3", "P@5"}
    assert res["P@1"] > 0.9, res
    json.dumps(res)  # JSON-serialisable


def test_dropout_and_linear_schedule_like_slidepys():
    """The baseline can train what slidepy's configs now ship: dropout on the hidden outputs and
    a learning rate decayed linearly to 0 (the last step's update is then tiny)."""
    train, test = _toy(600, seed=3), _toy(200, seed=4)
    kw = dict(hidden=32, batch_size=32, lr=1e-2, epochs=4, threads=1, eval_subset=100, keep_params=True)
    plain = tb.train_torch(train, test, **kw)
    both = tb.train_torch(train, test, dropout=0.5, lr_schedule="linear", **kw)
    assert both["dropout"] == 0.5 and both["lr_schedule"] == "linear"
    assert both["P@1"] > 0.8, both  # still learns the toy problem
    assert not np.allclose(plain["params"]["w2"].numpy(), both["params"]["w2"].numpy())
    with pytest.raises(ValueError, match="lr_schedule"):
        tb.train_torch(train, None, max_steps=1, lr_schedule="cosine")


def test_deeper_networks_forward_as_a_numpy_mlp():
    """hidden [a, b]: EmbeddingBag + ReLU, Linear + ReLU, then the output layer, as slidepy's
    network of two hidden layers computes it."""
    ds = _toy(10, seed=7)
    params = tb._build_model(ds.n_features, ds.n_labels, [6, 5], seed=1)
    assert [tuple(params[k].shape) for k in ("w1", "w2", "w3")] == [(40, 6), (5, 6), (12, 5)]
    xin, _, _ = tb._to_torch_batch(ds, np.arange(10), "embbag")
    got = tb._forward_logits(params, xin, "embbag").detach().numpy()
    p = {k: v.detach().numpy().astype(np.float64) for k, v in params.items()}
    x = np.zeros((10, ds.n_features))
    for i in range(10):
        lo, hi = ds.x_indptr[i], ds.x_indptr[i + 1]
        np.add.at(x[i], ds.x_indices[lo:hi], ds.x_values[lo:hi])
    h = np.maximum(x @ p["w1"] + p["b1"], 0)
    h = np.maximum(h @ p["w2"].T + p["b2"], 0)
    np.testing.assert_allclose(got, h @ p["w3"].T + p["b3"], rtol=1e-5, atol=1e-6)
    res = tb.train_torch(ds, ds, hidden=[6, 5], batch_size=5, epochs=1, dropout=0.3, eval_subset=None)
    assert res["hidden"] == [6, 5] and res["steps"] == 2 and np.isfinite(res["final_loss"])


def test_the_learning_rate_follows_slidepys_warm_up_and_decay():
    from slidepy.optimizer import scheduled_lr

    for schedule in ("constant", "linear"):
        for step in (0, 1, 4, 9, 10, 50, 99, 100):
            assert tb.scheduled_lr(0.01, schedule, 10, step, step / 100) == pytest.approx(
                scheduled_lr(0.01, schedule, 10, step, step / 100), rel=1e-12)
    seen = []

    class Spy(torch.optim.Adam):
        def step(self, *a, **kw):
            seen.append(self.param_groups[0]["lr"])
            return super().step(*a, **kw)

    train = _toy(64, seed=8)
    real = torch.optim.Adam
    torch.optim.Adam = Spy
    try:
        tb.train_torch(train, None, hidden=4, batch_size=16, epochs=2, lr=0.01, lr_warmup_steps=3,
                       lr_schedule="linear")
    finally:
        torch.optim.Adam = real
    assert seen == pytest.approx([scheduled_lr(0.01, "linear", 3, s, s / 8) for s in range(8)])


def test_input_scale_is_training_on_scaled_inputs_and_saves_raw_input_weights():
    """slidepy's model.input_scale c trains W on c x; the baseline multiplies the inputs by c, and
    its saved first layer holds c, so that it scores raw inputs."""
    train = _toy(64, seed=9)
    scaled = StandIn(train.x_indptr, train.x_indices, train.x_values * np.float32(3.0), train.y_indptr,
                     train.y_indices, train.n_features, train.n_labels)
    kw = dict(hidden=8, batch_size=16, epochs=1, lr=0.01, keep_params=True)
    a = tb.train_torch(train, None, input_scale=3.0, **kw)["params"]
    b = tb.train_torch(scaled, None, **kw)["params"]
    np.testing.assert_allclose(a["w2"].numpy(), b["w2"].numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(a["w1"].numpy(), 3.0 * b["w1"].numpy(), rtol=1e-5, atol=1e-7)


def test_he_init_is_normal_with_slidepys_spread():
    params = tb._build_model(2000, 300, [400], seed=0, init="he")
    assert params["w1"].std().item() == pytest.approx(np.sqrt(2.0 / 2000), rel=0.02)
    assert params["w2"].std().item() == pytest.approx(np.sqrt(2.0 / 400), rel=0.02)
    assert abs(params["w2"].mean().item()) < 0.01 * np.sqrt(2.0 / 400) * 10
    glorot = tb._build_model(2000, 300, [400], seed=0)["w2"]
    assert glorot.abs().max().item() <= np.sqrt(6.0 / 700) + 1e-7
    with pytest.raises(ValueError, match="init"):
        tb._build_model(20, 3, 4, seed=0, init="lecun")


def test_max_steps_and_time_budget_and_no_test():
    train = _toy(200, seed=5)
    res = tb.train_torch(train, None, hidden=8, batch_size=16, max_steps=5)
    assert res["steps"] == 5 and res["curve"] == [] and np.isnan(res["P@1"])
    res = tb.train_torch(train, None, hidden=8, batch_size=16, epochs=100, time_budget_s=0.0)
    assert res["steps"] == 1


def test_cli_with_stand_in_loader(tmp_path, monkeypatch):
    import sys
    import types

    ds = _toy(100, seed=6)
    fake_data = types.ModuleType("slidepy.data")
    fake_data.load_dataset = lambda path: ds
    monkeypatch.setitem(sys.modules, "slidepy.data", fake_data)
    out = tmp_path / "r.json"
    assert tb.main(["--train", "a", "--test", "b", "--max-steps", "3", "--batch-size", "16",
                    "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["steps"] == 3 and len(res["curve"]) == 1


def test_fused_output_layer_matches_autograd():
    ds = _toy(64, seed=7, empty_every=5)
    rows = np.arange(48)
    xin, yp, yi = tb._to_torch_batch(ds, rows, "embbag")
    grads = {}
    for impl in ("autograd", "fused"):
        params = tb._build_model(ds.n_features, ds.n_labels, 16, seed=0)
        if impl == "fused":
            loss = tb._FusedOutputCE(params["w2"], params["b2"], 64).loss(
                tb._first_layer(params, xin, "embbag"), yp, yi)
        else:
            loss = tb._loss(tb._forward_logits(params, xin, "embbag"), yp, yi)
        (2.0 * loss).backward()  # a non-unit upstream gradient
        grads[impl] = (float(loss.detach()), {k: v.grad.clone() for k, v in params.items()})
    assert grads["fused"][0] == pytest.approx(grads["autograd"][0], rel=1e-5)
    for k in ("w1", "b1", "w2", "b2"):
        torch.testing.assert_close(grads["fused"][1][k], grads["autograd"][1][k],
                                   rtol=1e-4, atol=1e-6)


def test_fused_and_autograd_training_agree():
    train, test = _toy(200, seed=8, empty_every=7), _toy(50, seed=9)
    res = [tb.train_torch(train, test, hidden=16, batch_size=32, lr=1e-2, epochs=2,
                          output_impl=impl, eval_subset=0)
           for impl in ("fused", "autograd")]
    assert res[0]["final_loss"] == pytest.approx(res[1]["final_loss"], rel=1e-3)
    assert res[0]["P@1"] == pytest.approx(res[1]["P@1"], abs=0.03)


def test_cli_with_real_loader(tmp_path):
    pytest.importorskip("slidepy.data")
    text = "4 6 3\n0,2 0:1 3:0.5\n1 1:2\n 2:1 5:1\n2 0:1 4:1\n"
    (tmp_path / "train.txt").write_text(text)
    out, model = tmp_path / "r.json", tmp_path / "m.pt"
    assert tb.main(["--train", str(tmp_path / "train.txt"), "--test", str(tmp_path / "train.txt"),
                    "--epochs", "2", "--batch-size", "2", "--json", str(out), "--save-model", str(model)]) == 0
    res = json.loads(out.read_text())
    assert res["steps"] == 4
    # P@1 by hand from the saved weights, on the file's rows written out densely: the third sample
    # has no labels and counts as a miss (XC convention), so P@1 is a multiple of 1/4, at most 3/4
    x = np.zeros((4, 6), np.float32)
    x[0, [0, 3]] = [1, 0.5]
    x[1, 1] = 2
    x[2, [2, 5]] = 1
    x[3, [0, 4]] = 1
    labels = [{0, 2}, {1}, set(), {2}]
    w = {k: v.detach().numpy().astype(np.float64) for k, v in torch.load(model).items()}
    logits = np.maximum(x @ w["w1"] + w["b1"], 0.0) @ w["w2"].T + w["b2"]
    top = logits.argmax(axis=1)
    assert np.all(np.sort(logits, axis=1)[:, -1] - np.sort(logits, axis=1)[:, -2] > 1e-6)  # no tie to break
    assert res["P@1"] == sum(int(top[i]) in labels[i] for i in range(4)) / 4


def test_runs_on_make_synthetic():
    synthetic = pytest.importorskip("slidepy.synthetic")
    train, test = synthetic.make_synthetic(256, 64, 50, 30, nnz_per_sample=6,
                                           labels_per_sample=(1, 3), seed=0)
    res = tb.train_torch(train, test, hidden=16, batch_size=32, lr=1e-2, epochs=10, eval_subset=0)
    # the floor a model must beat: always predicting the most frequent training label (0.469 here)
    popular = np.bincount(train.y_indices, minlength=train.n_labels).argmax()
    popularity = np.mean([popular in test.y_indices[test.y_indptr[i]:test.y_indptr[i + 1]]
                          for i in range(test.n_samples)])
    # measured 0.609 (torch seed 0); over data seeds 0-3 x torch seeds 0-2, 0.125 to 0.27 above
    # popularity (after 3 epochs it was -0.3 to +0.1: not yet learning)
    assert res["steps"] == 80 and res["P@1"] >= popularity + 0.06, (res["P@1"], popularity)
