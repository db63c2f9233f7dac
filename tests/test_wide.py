"""Tests for slidepy/wide.py (the hashed linear term on the output logits) and its use by the
engine: kernels against the naive_wide_* references, the engine's training step against the dense
NumPy MLP with the wide logits added, exact prediction (network candidates re-ranked), checkpoints
and a short training run where the term must pay off."""

import numba
import numpy as np
import pytest

import naive
from slidepy import Trainer, config_from_dict
from slidepy import engine as engine_mod
from slidepy import optimizer as optimizer_mod
from slidepy.wide import (add_wide_logits, adagrad_wide, make_wide, rerank_candidates, rerank_rows, slot,
                          table_layout, wide_bits)
from test_engine import ATOL, RTOL, ROWS, assert_grads, batch_of, make_data, make_engine, params_of




@pytest.fixture(autouse=True)
def one_thread():
    """One numba thread: the wide term's Hogwild updates then run in the references' order."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


def random_table(bits, seed=0):
    rng = np.random.default_rng(seed)
    return make_wide(bits)._replace(weights=rng.normal(0, 1, 1 << bits).astype(np.float32))


# -- kernels --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 4, 11, 20, 30])
def test_slot_matches_reference_and_stays_in_the_table(bits):
    row_bits, col_bits = table_layout(np.int64(1) << bits)
    assert (row_bits, col_bits) == (max(0, bits - 11), min(bits, 11))
    for feature, label in [(0, 0), (1, 0), (0, 1), (49414, 22874), (2**31 - 1, 2**31 - 1), (7, 123456)]:
        got = int(slot(feature, label, row_bits, col_bits))
        assert got == naive.naive_wide_slot(feature, label, bits)
        assert 0 <= got < 1 << bits


def test_slots_spread_pairs_evenly_and_keep_a_feature_in_its_row():
    """2^16 (feature, label) pairs of a grid into 2^14 slots (8 rows): slots filled as uniform
    hashing would (Poisson with mean 4: e^-4 = 1.8% empty, none near 20; a hash that ignored the
    label or the feature would pile pairs up), and all the slots of one feature in one row of 2^11."""
    bits = 14
    row_bits, col_bits = table_layout(np.int64(1) << bits)
    slots = np.array([[slot(f, n, row_bits, col_bits) for n in range(256)] for f in range(256)], np.int64)
    counts = np.bincount(slots.ravel(), minlength=1 << bits)
    assert 0.01 < (counts == 0).mean() < 0.03 and counts.max() < 20
    rows = slots >> 11
    assert (rows == rows[:, :1]).all() and len(np.unique(rows[:, 0])) == 8


def test_add_wide_logits_matches_reference():
    wide = random_table(6)
    x_ids = np.array([3, 17, 40000, 5], np.int32)
    x_vals = np.array([0.5, -1.25, 2.0, 0.0], np.float32)
    ids = np.array([0, 9, 3, 22874, 9], np.int32)
    logits = np.arange(5, dtype=np.float32)
    add_wide_logits(wide.weights, x_ids, x_vals, 4, ids, 4, logits)  # the fifth is beyond n_act
    want = np.arange(4) + naive.naive_wide_logits(wide.weights, x_ids, x_vals, ids[:4])
    np.testing.assert_allclose(logits[:4], want, rtol=1e-5, atol=1e-6)
    assert logits[4] == 4.0


@pytest.mark.parametrize("bits", [3, 12])  # 3: (feature, label) pairs share slots
def test_adagrad_wide_matches_reference(bits):
    wide = random_table(bits, seed=1)
    wide.accum[:] = np.random.default_rng(2).uniform(0, 0.1, wide.accum.shape[0])
    ref_w, ref_a = wide.weights.astype(np.float64), wide.accum.astype(np.float64)
    x_ids = np.array([4, 11, 2], np.int32)
    x_vals = np.array([0.7, 0.0, -1.5], np.float32)
    ids = np.array([5, 1, 8, 2], np.int32)
    grads = np.array([0.3, 0.0, -0.2, 0.00005], np.float32) / 8  # the last is below MIN_GRAD per sample
    for _ in range(3):  # repeated steps: the accumulator shrinks them
        adagrad_wide(wide, x_ids, x_vals, 3, ids, 4, grads, np.float32(1 / 8), np.float32(0.1))
        naive.naive_wide_adagrad(ref_w, ref_a, x_ids, x_vals, ids, grads, 0.1, grad_scale=1 / 8)
    np.testing.assert_allclose(wide.weights, ref_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wide.accum, ref_a, rtol=1e-5, atol=1e-9)
    assert (wide.accum > 0.1).sum() > 0  # something was updated


def test_rerank_rows_matches_reference():
    wide = random_table(8, seed=3)
    rng = np.random.default_rng(4)
    x_indptr = np.array([0, 3, 3, 6], np.int64)
    x_indices = rng.integers(0, 50, 6).astype(np.int32)
    x_values = rng.uniform(0.1, 1, 6).astype(np.float32)
    rows = np.array([2, 0, 1], np.int64)
    cand_ids = rng.integers(0, 30, (3, 7)).astype(np.int32)
    cand_ids[1, 5:] = -1  # fewer candidates than slots
    cand_scores = np.sort(rng.normal(0, 1, (3, 7)).astype(np.float32), axis=1)[:, ::-1].copy()
    top_ids = np.zeros((3, 4), np.int32)
    top_vals = np.zeros((3, 4), np.float32)
    rerank_rows(wide.weights, x_indptr, x_indices, x_values, rows, cand_ids, cand_scores, top_ids, top_vals)
    for b, i in enumerate(rows):
        x0, x1 = x_indptr[i], x_indptr[i + 1]
        keep = cand_ids[b] >= 0
        scores = cand_scores[b][keep] + naive.naive_wide_logits(wide.weights, x_indices[x0:x1], x_values[x0:x1],
                                                                cand_ids[b][keep])
        order = np.argsort(-scores, kind="stable")[:4]
        np.testing.assert_array_equal(top_ids[b], cand_ids[b][keep][order])
        np.testing.assert_allclose(top_vals[b], scores[order], rtol=1e-5, atol=1e-6)


def test_table_size_rules():
    assert make_wide(0).weights.shape == (0,) and make_wide(5).accum.shape == (32,)
    assert wide_bits(0) == 20 and wide_bits(3e5) == 20 and wide_bits(1e7) == 25 and wide_bits(3e6) == 23
    assert rerank_candidates(50, 5) == 50 and rerank_candidates(10**5, 5) == 200 and rerank_candidates(10**5, 30) == 600


# -- the engine --------------------------------------------------------------------------------------


def wide_logits_of(eng, data, rows):
    """(B, N) float64 wide logits of dataset rows for every label, from the reference."""
    labels = np.arange(eng.n_labels)
    return np.stack([naive.naive_wide_logits(eng.wide.weights, *(a[data.x_indptr[i]:data.x_indptr[i + 1]]
                                                                 for a in (data.x_indices, data.x_values)), labels)
                     for i in rows])


def test_training_step_equals_dense_mlp_with_wide_logits(monkeypatch):
    """Every neuron active: the network's gradients are the dense MLP's with the wide logits added
    before the loss, and the wide table takes the reference's Adagrad steps with those deltas."""
    data = make_data(5)
    eng = make_engine([8], wide_bits=7, wide_lr=0.05)
    eng.wide.weights[:] = np.random.default_rng(6).normal(0, 0.5, 128)
    x, labels, feats = batch_of(data, ROWS)
    # Samples update the table as they go, so each sees its predecessors' steps: the reference
    # walks the batch in order, one sample's loss (network logits + current wide logits) at a time.
    want_w, want_a = eng.wide.weights.astype(np.float64), eng.wide.accum.astype(np.float64)
    extra = np.zeros((len(ROWS), eng.n_labels))
    for b, i in enumerate(ROWS):
        vals = data.x_values[data.x_indptr[i]:data.x_indptr[i + 1]]
        extra[b] = naive.naive_wide_logits(want_w, feats[b], vals, np.arange(eng.n_labels))
        one = naive.naive_forward_backward(params_of(eng), x[b:b + 1], labels[b:b + 1], eng.loss,
                                           grad_scale=1 / len(ROWS), extra_logits=extra[b:b + 1])
        naive.naive_wide_adagrad(want_w, want_a, feats[b], vals, np.arange(eng.n_labels),
                                 one["deltas"][-1][0].astype(np.float32), 0.05, grad_scale=1 / len(ROWS))
    ref = naive.naive_forward_backward(params_of(eng), x, labels, eng.loss, extra_logits=extra)
    seen = {}

    def spy(layers, **kw):
        seen["grads"] = [(l.weight_grad.copy(), l.bias_grad.copy()) for l in layers]
        out = layers[len(layers) - 1]
        seen["grads"][-1] = (optimizer_mod.recorded_weight_grad(kw["records"], out.weights.shape), out.bias_grad.copy())
        return optimizer_mod.apply_updates(layers, **kw)

    monkeypatch.setattr(engine_mod, "apply_updates", spy)
    stats = eng.train_step(data, np.asarray(ROWS, np.int64))
    assert_grads(seen["grads"], ref["grads"])
    np.testing.assert_allclose(stats.loss, ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(eng.wide.weights, want_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(eng.wide.accum, want_a, rtol=1e-4, atol=1e-12)
    assert eng.wide.accum.any()


def test_wide_learning_rate_follows_the_schedule():
    eng = make_engine([8], wide_bits=4, wide_lr=0.2, lr=0.01)
    assert eng.wide_step_lr() == np.float32(0.2)
    eng.lr = 0.0025  # the trainer's schedule (or a NaN rollback) scaled lr by a quarter
    assert eng.wide_step_lr() == np.float32(0.05)


@pytest.mark.parametrize("through_kernel", [False, True])
def test_predict_adds_the_wide_term(through_kernel):
    """Exact scoring (network candidates, then re-ranked: every label is a candidate at 16 labels)
    and the per-sample kernel path that LSH inference takes (infer_batch's forward, here over every
    neuron) both give the top-k of network + wide logits."""
    data = make_data(7)
    eng = make_engine([8], wide_bits=8, wide_lr=0.05)
    eng.wide.weights[:] = np.random.default_rng(8).normal(0, 2, 256)
    rows = np.arange(data.n_samples, dtype=np.int64)
    x, _, _ = batch_of(data, rows)
    _, hs = naive.naive_forward(params_of(eng), x)
    logits = hs[-1] + wide_logits_of(eng, data, rows)
    without, _ = naive.naive_topk(hs[-1], 3)
    want_ids, want_scores = naive.naive_topk(logits, 3)
    assert (want_ids != without).any()  # the term changes the ranking
    if through_kernel:
        ids, scores = engine_mod.predict_lsh_output(eng, data, rows, 3, eng.spec, 4)[:2]
    else:
        ids, scores, _ = eng.predict(data, rows, k=3)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=RTOL, atol=ATOL)


def test_checkpoint_round_trip_keeps_the_tables(tiny_config, tmp_path):
    tiny_config["model"]["wide"] = {"enabled": True, "bits": 12}
    tiny_config["training"]["epochs"] = 1
    trainer = Trainer(config_from_dict(tiny_config), progress=False)
    trainer.fit()
    loaded = Trainer.load(trainer.save(tmp_path / "model.npz"))
    for name in ("weights", "accum"):
        got, want = getattr(loaded.engine.wide, name), getattr(trainer.engine.wide, name)
        assert got.shape == (4096,) and want.any()
        np.testing.assert_array_equal(got, want)
    ids_a, scores_a = trainer.predict(trainer.test_data, k=5)
    ids_b, scores_b = loaded.predict(trainer.test_data, k=5)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(scores_a, scores_b)


def test_wide_term_lifts_a_bottlenecked_network(tiny_config, tmp_path):
    """A 4-unit hidden layer cannot tell 150 labels apart; the wide term ties features to labels
    directly and must add at least 0.1 P@1 on the same data, steps and seed."""
    tiny_config["model"]["hidden"] = [4]
    tiny_config["eval"]["recall_samples"] = 0
    results = {}
    for enabled in (False, True):
        tiny_config["model"]["wide"] = {"enabled": enabled}
        results[enabled] = Trainer(config_from_dict(tiny_config), run_dir=tmp_path / str(enabled),
                                   progress=False).fit()["P@1"]
    assert results[True] > results[False] + 0.1, results


def test_config_memory_estimate_and_distributed_refusal(tiny_config):
    from slidepy.distributed import train_distributed
    from slidepy.errors import ConfigError
    from slidepy.memory import estimate_for_config

    assert config_from_dict(tiny_config).model.wide.enabled is False  # off unless asked for
    without = estimate_for_config(config_from_dict(tiny_config), threads=1).parts["wide term"]
    tiny_config["model"]["wide"] = {"enabled": True, "bits": 16}
    tiny_config["distributed"] = {"workers": 2}
    cfg = config_from_dict(tiny_config)
    assert without == 0 and estimate_for_config(cfg, threads=1).parts["wide term"] == 2 * 4 * 2**16
    with pytest.raises(ConfigError, match="model.wide.enabled"):
        train_distributed(cfg, progress=False)
    tiny_config["model"]["wide"] = {"enabled": True, "bits": 31}
    with pytest.raises(ConfigError, match="model.wide.bits"):
        config_from_dict(tiny_config)
