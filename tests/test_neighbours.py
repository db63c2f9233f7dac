"""slidepy/neighbours.py: the blended scores against a NumPy reference, the bank, and the votes at
work in training's final evaluation and in `slidepy evaluate`."""

import dataclasses
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from slidepy import Trainer, load_config
from slidepy.cli import main
from slidepy.configfile import config_from_dict
from slidepy.data import Dataset
from slidepy.errors import ConfigError
from naive import naive_blend, naive_input_cosine, naive_loo_p1
from slidepy.neighbours import (NeighbourBank, blend_topk, build_bank, choose_space, input_postings,
                                input_similarities, unit_rows)


def random_bank(rng, n_samples, width, n_labels, k, weight, temperature=0.05):
    counts = rng.integers(1, 4, n_samples)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = rng.integers(0, n_labels, indptr[-1]).astype(np.int32)
    vectors = unit_rows(rng.standard_normal((n_samples, width)).astype(np.float32))
    return NeighbourBank(vectors, indptr, indices, k, weight, temperature)


@pytest.mark.parametrize("k,weight,temperature", [(1, 0.3, 0.05), (5, 0.3, 0.05), (7, 1.0, 0.2), (40, 0.6, 0.01)])
def test_blend_matches_the_reference(k, weight, temperature):
    rng = np.random.default_rng(k)
    n_labels, width = 40, 12
    hidden = rng.standard_normal((9, width)).astype(np.float32)
    weights = rng.standard_normal((n_labels, width)).astype(np.float32)
    bias = rng.standard_normal(n_labels).astype(np.float32)
    bank = random_bank(rng, 30, width, n_labels, k, weight, temperature)  # k 40 > 30 bank samples
    ids = np.empty((9, 5), np.int32)
    vals = np.empty((9, 5), np.float32)
    blend_topk(hidden, weights, bias, bank, ids, vals)
    expect = naive_blend(hidden, weights, bias, bank)
    np.testing.assert_allclose(vals, np.sort(expect, axis=1)[:, ::-1][:, :5], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.take_along_axis(expect, ids.astype(np.int64), axis=1), vals, rtol=1e-5, atol=1e-7)


def sparse_set(dense, labels, n_labels):
    """A Dataset of the dense rows (S, F) and one label list per row."""
    rows, cols = np.nonzero(dense)
    x_indptr = np.concatenate([[0], np.cumsum((dense != 0).sum(axis=1))])
    y_indptr = np.concatenate([[0], np.cumsum([len(ls) for ls in labels])])
    y_indices = np.array([label for ls in labels for label in ls], np.int32)
    return Dataset(x_indptr, cols, dense[rows, cols], y_indptr, y_indices, dense.shape[1], n_labels)


def random_rows(rng, n, n_features, density=0.3):
    return (rng.random((n, n_features)) * (rng.random((n, n_features)) < density)).astype(np.float32)


def test_input_similarities_match_the_reference():
    """The cosine of sparse input rows with the bank's: zero rows (in the bank, first and last, and
    among the queries) are similar to none, and a query's features past the bank's count in its
    norm but match no bank row."""
    rng = np.random.default_rng(3)
    bank_rows = random_rows(rng, 30, 12)
    bank_rows[[0, -1]] = 0.0
    queries = random_rows(rng, 9, 15, density=0.5)
    queries[4] = 0.0
    bank = sparse_set(bank_rows, [[0]] * 30, 1)
    data = sparse_set(queries, [[0]] * 9, 1)
    postings = input_postings(bank)
    assert postings.n_rows == 30
    rows = np.array([8, 0, 4, 4, 2], np.int64)  # any order, repeats allowed
    got = input_similarities(postings, data, rows)
    assert got.shape == (5, 30) and got.dtype == np.float32
    np.testing.assert_allclose(got, naive_input_cosine(queries[rows], bank_rows), rtol=1e-5, atol=1e-6)
    assert np.all(got[:, [0, -1]] == 0) and np.all(got[2:4] == 0)
    with pytest.raises(ValueError, match="rows must lie"):
        input_similarities(postings, data, np.array([9]))


def test_a_feature_repeated_in_a_row_counts_as_its_sum():
    """Rows may repeat a feature id (data.Dataset); the dot products add both values, so the norm
    and the cosine take the row with them summed, in the bank and in the queries alike."""
    def rows_of(entries, n_features=3):
        x_indptr = np.cumsum([0] + [len(r) for r in entries])
        flat = [e for r in entries for e in r]
        data = Dataset(x_indptr, [f for f, _ in flat], [v for _, v in flat], np.arange(len(entries) + 1),
                       np.zeros(len(entries), np.int32), n_features, 1)
        dense = np.zeros((len(entries), n_features))
        for i, r in enumerate(entries):
            for f, v in r:
                dense[i, f] += v
        return data, dense

    bank, bank_dense = rows_of([[(0, 1.0), (0, 1.0)], [(0, 1.0), (1, 1.0)], [], [(2, 1.0), (1, 2.0), (2, -1.0)]])
    queries, query_dense = rows_of([[(0, 1.0), (0, -1.0), (1, 1.0)], [(1, 1.0)], [(0, 2.0), (0, 1.0), (1, 3.0)]])
    postings = input_postings(bank)
    assert postings.rows.shape[0] == 5  # rows 0, 1, 1, 3, 3: repeats merged (row 3, feature 2 summed to 0)
    for data, dense in ((bank, bank_dense), (queries, query_dense)):
        got = input_similarities(postings, data, np.arange(data.n_samples, dtype=np.int64))
        np.testing.assert_allclose(got, naive_input_cosine(dense, bank_dense), rtol=1e-6, atol=1e-7)
    assert input_similarities(postings, bank, np.array([0]))[0, 0] == pytest.approx(1.0)
    for data, dense in ((bank, bank_dense), (queries, query_dense)):  # the norms themselves, any rows
        rows = np.arange(data.n_samples, dtype=np.int64)[::-1].copy()
        np.testing.assert_allclose(data.row_norms(rows), np.linalg.norm(dense[rows], axis=1), rtol=1e-12)


@pytest.mark.parametrize("k,weight", [(1, 1.0), (5, 0.3), (40, 0.7)])
def test_blend_in_the_input_space_matches_the_reference(k, weight):
    rng = np.random.default_rng(k)
    n_labels, width = 20, 6
    bank_rows, queries = random_rows(rng, 25, 10), random_rows(rng, 7, 10)
    queries[2] = 0.0  # no input: the network alone
    labels = [rng.choice(n_labels, size=rng.integers(1, 4), replace=False).tolist() for _ in range(25)]
    train = sparse_set(bank_rows, labels, n_labels)
    bank = random_bank(rng, 25, width, n_labels, k, weight)._replace(
        vectors=np.zeros((25, 0), np.float32), space="input", postings=input_postings(train),
        y_indptr=train.y_indptr, y_indices=train.y_indices)
    hidden = rng.standard_normal((7, width)).astype(np.float32)
    weights = rng.standard_normal((n_labels, width)).astype(np.float32)
    bias = rng.standard_normal(n_labels).astype(np.float32)
    data, rows = sparse_set(queries, [[0]] * 7, n_labels), np.arange(7, dtype=np.int64)
    ids, vals = np.empty((7, 5), np.int32), np.empty((7, 5), np.float32)
    blend_topk(hidden, weights, bias, bank, ids, vals, data, rows)
    expect = naive_blend(hidden, weights, bias, bank, sims=naive_input_cosine(queries, bank_rows))
    np.testing.assert_allclose(vals, np.sort(expect, axis=1)[:, ::-1][:, :5], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.take_along_axis(expect, ids.astype(np.int64), axis=1), vals, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="input rows"):
        blend_topk(hidden, weights, bias, bank, ids, vals)


def test_input_space_ties_go_to_the_lower_bank_ids():
    """Bank rows at the same cosine: the k nearest are the lowest ids, as the hidden space's scan
    in id order takes them, not the first the postings reach (here ids 4 and 5, through feature 0)."""
    n = 6
    rows = np.zeros((n, 2), np.float32)
    rows[:4, 1] = 1.0  # rows 0-3 on feature 1
    rows[4:, 0] = 1.0  # rows 4-5 on feature 0, which the query lists first
    train = sparse_set(rows, [[i] for i in range(n)], n)
    bank = NeighbourBank(np.zeros((n, 0), np.float32), train.y_indptr, train.y_indices, 2, 1.0, 0.05, space="input",
                         postings=input_postings(train))
    query = sparse_set(np.array([[1.0, 1.0]], np.float32), [[0]], n)  # cosine 0.707 with every bank row
    ids, vals = np.empty((1, 3), np.int32), np.empty((1, 3), np.float32)
    blend_topk(np.zeros((1, 1), np.float32), np.zeros((n, 1), np.float32), np.zeros(n, np.float32), bank, ids, vals,
               query, np.array([0]))
    assert sorted(ids[0, :2].tolist()) == [0, 1] and vals[0, 0] == pytest.approx(0.5) and vals[0, 2] == 0.0


def two_space_bank(rng, n, n_labels, informative):
    """A bank of n samples of one label each (label i % n_labels) in both spaces, where the
    `informative` one places a sample near its label's prototype and the other at random."""
    labels = [[i % n_labels] for i in range(n)]
    proto_in = rng.random((n_labels, 40)) * (rng.random((n_labels, 40)) < 0.3)
    rows = random_rows(rng, n, 40, density=0.2)
    proto_hidden = rng.standard_normal((n_labels, 8))
    vectors = rng.standard_normal((n, 8))
    if informative == "input":
        rows = (proto_in[[ls[0] for ls in labels]] + 0.3 * rows).astype(np.float32)
    else:
        vectors = proto_hidden[[ls[0] for ls in labels]] + 0.3 * vectors
    train = sparse_set(rows, labels, n_labels)
    bank = NeighbourBank(unit_rows(vectors.astype(np.float32)), train.y_indptr, train.y_indices, 5, 0.5, 0.05,
                         space="input", postings=input_postings(train))
    return bank, train, rows


@pytest.mark.parametrize("informative", ["input", "hidden"])
def test_auto_space_picks_the_space_whose_left_out_votes_rank_better(informative):
    """choose_space: each space's leave-one-out P@1 equals the reference's, on the samples its seed
    draws (all of them here: fewer than LOO_SAMPLES), and the space that carries the labels wins."""
    rng = np.random.default_rng(11)
    bank, train, rows = two_space_bank(rng, 120, 6, informative)
    chosen, precision = choose_space(bank, train, seed=0)
    held = np.arange(120)
    hidden_sims = bank.vectors @ bank.vectors.T
    input_sims = naive_input_cosine(rows, rows)
    assert precision["hidden"] == pytest.approx(naive_loo_p1(hidden_sims, held, bank.y_indptr, bank.y_indices, 5, 0.05))
    assert precision["input"] == pytest.approx(naive_loo_p1(input_sims, held, bank.y_indptr, bank.y_indices, 5, 0.05))
    other = {"input": "hidden", "hidden": "input"}[informative]
    assert chosen == informative and precision[informative] > 0.9 and precision[other] < 0.5


def test_a_sample_is_left_out_of_its_own_vote():
    """Samples that share no feature and no hidden direction with any other have no neighbour but
    themselves: with those left out, neither space votes for anything (P@1 0), and the tie keeps
    the hidden space."""
    n = 8
    train = sparse_set(np.eye(n, dtype=np.float32), [[i] for i in range(n)], n)
    bank = NeighbourBank(np.eye(n, dtype=np.float32), train.y_indptr, train.y_indices, 3, 0.5, 0.05,
                         space="input", postings=input_postings(train))
    assert choose_space(bank, train, seed=0) == ("hidden", {"hidden": 0.0, "input": 0.0})


def test_no_similar_neighbour_leaves_the_network_ranking():
    rng = np.random.default_rng(0)
    hidden = np.abs(rng.standard_normal((4, 6))).astype(np.float32)
    weights = rng.standard_normal((10, 6)).astype(np.float32)
    bias = np.zeros(10, np.float32)
    bank = random_bank(rng, 5, 6, 10, 3, 0.5)
    bank = bank._replace(vectors=-np.abs(bank.vectors))  # every similarity negative: no votes
    ids = np.empty((4, 3), np.int32)
    vals = np.empty((4, 3), np.float32)
    blend_topk(hidden, weights, bias, bank, ids, vals)
    np.testing.assert_array_equal(ids, np.argsort(-(hidden @ weights.T), axis=1)[:, :3])
    assert np.all(vals <= 0.5 + 1e-6)  # half the softmax mass at most


def test_a_nan_logit_scores_as_no_score_and_leaves_the_others_ranked():
    """A diverged label row (NaN logit) drops out of the blend as topk_row drops it, instead of
    making every blended score NaN (an empty top-k)."""
    rng = np.random.default_rng(3)
    n_labels, width = 12, 5
    hidden = rng.standard_normal((3, width)).astype(np.float32)
    weights = rng.standard_normal((n_labels, width)).astype(np.float32)
    bias = rng.standard_normal(n_labels).astype(np.float32)
    bank = random_bank(rng, 20, width, n_labels, 4, 0.4)
    nan_bias = bias.copy()
    nan_bias[2] = np.nan
    ids = np.empty((3, 4), np.int32)
    vals = np.empty((3, 4), np.float32)
    blend_topk(hidden, weights, nan_bias, bank, ids, vals)
    minus_inf = bias.copy()
    minus_inf[2] = -np.inf
    expect = naive_blend(hidden, weights, minus_inf, bank)
    assert np.all(ids >= 0) and np.all(np.isfinite(vals))
    np.testing.assert_allclose(vals, np.sort(expect, axis=1)[:, ::-1][:, :4], rtol=1e-5, atol=1e-7)
    inf_bias = bias.copy()
    inf_bias[2] = np.inf  # a diverged row's overflow counts as no score too
    blend_topk(hidden, weights, inf_bias, bank, ids, vals)
    np.testing.assert_allclose(vals, np.sort(expect, axis=1)[:, ::-1][:, :4], rtol=1e-5, atol=1e-7)
    # every logit NaN: the votes alone rank the labels
    blend_topk(hidden, weights, np.full(n_labels, np.nan, np.float32), bank, ids, vals)
    votes = naive_blend(hidden, weights, np.zeros(n_labels), bank) - (1 - bank.weight) * naive_blend(
        hidden, weights, np.zeros(n_labels), bank._replace(weight=0.0))
    np.testing.assert_allclose(vals, np.sort(votes, axis=1)[:, ::-1][:, :4], rtol=1e-5, atol=1e-7)


def test_temperature_sets_how_far_the_votes_reach():
    """Cold, the nearest neighbour's vote is all there is (k 1's blend); hot, the k neighbours
    count alike (each label slot of the k the same share)."""
    rng = np.random.default_rng(3)
    n_labels, width = 12, 8
    hidden = rng.standard_normal((6, width)).astype(np.float32)
    weights = np.zeros((n_labels, width), np.float32)  # a flat softmax: the votes alone order the labels
    bias = np.zeros(n_labels, np.float32)
    bank = random_bank(rng, 20, width, n_labels, 4, 1.0)

    def scores(b):
        ids, vals = np.empty((6, n_labels), np.int32), np.empty((6, n_labels), np.float32)
        blend_topk(hidden, weights, bias, b, ids, vals)
        out = np.zeros((6, n_labels))
        np.put_along_axis(out, ids.astype(np.int64), vals, axis=1)
        return out

    cold = scores(bank._replace(temperature=1e-4))
    np.testing.assert_allclose(cold, scores(bank._replace(k=1)), atol=1e-6)
    hot = scores(bank._replace(temperature=1e4))
    sims = unit_rows(hidden.copy()) @ bank.vectors.T
    for i in range(6):
        near = np.argsort(-sims[i], kind="stable")[:4]
        near = near[sims[i, near] > 0]
        slots = np.concatenate([bank.y_indices[bank.y_indptr[s]:bank.y_indptr[s + 1]] for s in near])
        np.testing.assert_allclose(hot[i], np.bincount(slots, minlength=n_labels) / slots.size, atol=1e-4)


def test_config_rejects_votes_it_cannot_blend():
    with pytest.raises(ConfigError, match="model.loss softmax"):
        config_from_dict({"model": {"loss": "bce", "neighbours": {"weight": 0.3}}})
    with pytest.raises(ConfigError, match="inference exact"):
        config_from_dict({"model": {"output": {"selection": {"mode": "lsh", "inference": "lsh"}},
                                    "neighbours": {"weight": 0.3}}})
    with pytest.raises(ConfigError):
        config_from_dict({"model": {"neighbours": {"weight": 1.5}}})
    with pytest.raises(ConfigError, match="temperature"):
        config_from_dict({"model": {"neighbours": {"weight": 0.3, "temperature": 0}}})


def test_bank_holds_unit_hidden_vectors(tiny_config, one_thread):
    trainer = Trainer(load_config(tiny_config, ["training.max_steps=3"]), progress=False)
    trainer.fit()
    bank = build_bank(trainer.engine, trainer.train_data, 4, 0.2, 0.05)
    hidden = np.zeros_like(bank.vectors)
    trainer.engine.last_hidden(trainer.train_data, np.arange(trainer.train_data.n_samples), hidden)
    np.testing.assert_allclose(bank.vectors, unit_rows(hidden), rtol=1e-6)
    norms = np.linalg.norm(bank.vectors, axis=1)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)
    data = trainer.train_data
    for i in range(data.n_samples):  # each sample's labels, as a set
        assert bank.y_indices[bank.y_indptr[i]:bank.y_indptr[i + 1]].tolist() == \
            sorted(set(data.y_indices[data.y_indptr[i]:data.y_indptr[i + 1]].tolist()))
    # a label written twice in a line votes once, as it trains once
    import dataclasses

    starts = data.y_indptr[:-1][np.diff(data.y_indptr) > 0]
    doubled = dataclasses.replace(
        data, y_indices=np.insert(data.y_indices, starts, data.y_indices[starts]).astype(np.int32),
        y_indptr=data.y_indptr + np.concatenate(([0], np.cumsum(np.diff(data.y_indptr) > 0))))
    twice = build_bank(trainer.engine, doubled, 4, 0.2, 0.05)
    assert doubled.y_indices.shape[0] > bank.y_indices.shape[0]
    np.testing.assert_array_equal(twice.y_indptr, bank.y_indptr)
    np.testing.assert_array_equal(twice.y_indices, bank.y_indices)
    with pytest.raises(ValueError):
        build_bank(trainer.engine, trainer.train_data, 0, 0.2, 0.05)
    with pytest.raises(ValueError):
        build_bank(trainer.engine, trainer.train_data, 4, 0.2, 0.0)
    # a sampled bank: that many distinct training samples, their own vectors and labels, the same
    # draw for the same seed; asking for more than there are keeps them all
    data = trainer.train_data
    part = build_bank(trainer.engine, data, 4, 0.2, 0.05, samples=data.n_samples // 3, seed=7)
    assert part.vectors.shape == (data.n_samples // 3, bank.vectors.shape[1])
    matches = [np.flatnonzero(np.all(np.isclose(bank.vectors, v, rtol=1e-6, atol=1e-7), axis=1)) for v in part.vectors]
    rows = [m[0] for m in matches]
    assert all(len(m) >= 1 for m in matches) and len(set(rows)) == len(rows)
    for i, r in enumerate(rows):
        mine = set(part.y_indices[part.y_indptr[i]:part.y_indptr[i + 1]].tolist())
        assert mine == set(data.y_indices[data.y_indptr[r]:data.y_indptr[r + 1]].tolist())
    again = build_bank(trainer.engine, data, 4, 0.2, 0.05, samples=data.n_samples // 3, seed=7)
    np.testing.assert_array_equal(again.vectors, part.vectors)
    everything = build_bank(trainer.engine, data, 4, 0.2, 0.05, samples=data.n_samples + 5)
    np.testing.assert_array_equal(everything.vectors, bank.vectors)


def evaluate_the_run(trainer, tmp_path):
    """`slidepy evaluate --json` of the run's newest checkpoint (in tmp_path/run) on its test set."""
    from slidepy.data import write_dataset

    checkpoint = max((tmp_path / "run" / "checkpoints").glob("step-*.npz"))
    write_dataset(trainer.test_data, tmp_path / "test.txt")
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "test.txt"),
                                       "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return result


def test_a_run_votes_in_the_space_auto_chose_and_evaluate_chooses_it_again(tiny_config, tmp_path, one_thread):
    tiny_config["model"]["neighbours"] = {"k": 3, "weight": 0.5, "space": "auto"}
    trainer = Trainer(load_config(tiny_config), progress=False)
    final = trainer.fit()
    bank = trainer.engine.neighbours
    assert final["votes_space"] == bank.space and set(final["votes_loo_p1"]) == {"hidden", "input"}
    assert final["votes_loo_p1"] == bank.loo_precision
    assert (bank.space == "input") == (bank.loo_precision["input"] > bank.loo_precision["hidden"])
    # the input rows stay (whichever space won), the hidden vectors only where that space won
    assert bank.postings is not None and (bank.vectors.shape[1] == 0) == (bank.space == "input")
    # the next evaluation takes the input rows and their leave-one-out P@1 from this bank: they do
    # not move with the weights (a marked figure comes back); another training set's are its own
    model = trainer.model
    model._input_space = model._input_space[:3] + (0.0125,)
    model.attach_neighbours(trainer.train_data)
    again = trainer.engine.neighbours
    assert again.postings is bank.postings and again.loo_precision["input"] == 0.0125
    other = trainer.train_data.subset(np.arange(trainer.train_data.n_samples))
    model.attach_neighbours(other)
    assert trainer.engine.neighbours.postings is not bank.postings
    assert trainer.engine.neighbours.loo_precision["input"] == final["votes_loo_p1"]["input"]
    model.attach_neighbours(trainer.train_data)
    # an input-space bank holds the unit input rows, whatever the network
    data = trainer.train_data
    inp = build_bank(trainer.engine, data, 3, 0.5, 0.05, space="input")
    assert inp.space == "input" and inp.vectors.shape == (data.n_samples, 0) and inp.loo_precision is None
    dense = np.zeros((data.n_samples, data.n_features))
    np.add.at(dense, (np.repeat(np.arange(data.n_samples), np.diff(data.x_indptr)), data.x_indices), data.x_values)
    rows = np.arange(data.n_samples, dtype=np.int64)
    np.testing.assert_allclose(input_similarities(inp.postings, data, rows), naive_input_cosine(dense, dense),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="space"):
        build_bank(trainer.engine, data, 3, 0.5, 0.05, space="tf-idf")
    # `slidepy evaluate` builds the bank again, in the same space, and scores the same
    result = evaluate_the_run(trainer, tmp_path)
    assert json.loads(result.output.strip().splitlines()[-1])["P@1"] == pytest.approx(final["P@1"])
    loo = final["votes_loo_p1"]
    assert (f"model.neighbours: votes in the {final['votes_space']} space (held-out P@1 of the votes alone: "
            f"hidden {loo['hidden']:.3f}, input {loo['input']:.3f})") in result.output


def test_final_eval_votes_and_evaluate_rebuilds_the_bank(tiny_config, tmp_path, one_thread):
    tiny_config["model"]["neighbours"] = {"k": 1, "weight": 1.0}
    tiny_config["training"]["epochs"] = 2
    trainer = Trainer(load_config(tiny_config), progress=False)
    final = trainer.fit()
    assert trainer.engine.neighbours is not None
    # k 1, weight 1: each training sample's nearest bank sample is itself, so its own labels
    # rank first (unless its hidden vector is zero or shared with another sample's)
    hidden = trainer.engine.neighbours.vectors
    distinct = np.unique(hidden, axis=0).shape[0] == hidden.shape[0] and np.all(np.abs(hidden).sum(axis=1) > 0)
    most = trainer.train_data.subset(np.arange(1, trainer.train_data.n_samples))  # not the bank's set: votes
    assert distinct and trainer.evaluate(most, subset=None)["P@1"] == pytest.approx(1.0)
    # ... which is why the very set the bank holds, or a copy of it, is scored by the network alone
    on_train = trainer.evaluate(trainer.train_data, subset=None)
    copy = dataclasses.replace(trainer.train_data, source="another set of the same samples")
    assert trainer.evaluate(copy, subset=None) == on_train
    assert trainer.engine.neighbours is not None  # and the bank stays for predictions
    trainer.model.detach_neighbours()
    alone = trainer.evaluate(trainer.train_data, subset=None)
    assert alone["P@1"] < 1.0 and on_train == alone
    # `slidepy evaluate` on the saved model builds the bank again from the config's data
    result = evaluate_the_run(trainer, tmp_path)
    assert json.loads(result.output.strip().splitlines()[-1])["P@1"] == pytest.approx(final["P@1"])


def test_a_run_without_a_test_set_scores_the_training_set_without_its_own_votes(tiny_config, tmp_path, one_thread):
    """No test set: evaluations score the training set, say so (`split`), and leave out the votes,
    which would be each sample's own labels; the CLI's last line says so too."""
    from slidepy import make_synthetic
    from slidepy.data import write_dataset

    tiny_config["model"]["neighbours"] = {"k": 1, "weight": 1.0}
    tiny_config["training"]["epochs"] = 2
    held_out = Trainer(load_config(tiny_config), progress=False).fit()
    assert held_out["split"] == "test"
    syn = tiny_config["data"]["synthetic"]
    train, _ = make_synthetic(syn["n_train"], 1, syn["n_features"], syn["n_labels"], nnz_per_sample=syn["nnz_per_sample"],
                              labels_per_sample=tuple(syn["labels_per_sample"]), seed=syn["seed"])
    tiny_config["output"]["run_dir"] = str(tmp_path / "train-only")
    trainer = Trainer(load_config(tiny_config), train=train, progress=False)
    final = trainer.fit()
    evals = [r for r in trainer.history if r["event"] == "eval"]
    assert evals and all(r["split"] == "train" for r in evals)
    assert trainer.engine.neighbours is not None  # kept for predictions
    trainer.model.detach_neighbours()
    alone = trainer.evaluate(train, subset=None)
    assert final["P@1"] == alone["P@1"] < 1.0
    # the command line: a training file alone
    write_dataset(train, tmp_path / "train.txt")
    cfg = dict(tiny_config, data={"train": str(tmp_path / "train.txt"), "test": None})
    cfg["output"] = dict(cfg["output"], run_dir=str(tmp_path / "cli"))
    # (space auto: its choice goes unsaid where no votes count)
    cfg["model"] = dict(cfg["model"], neighbours={"k": 1, "weight": 1.0, "space": "auto"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(main, ["train", "--config", str(tmp_path / "c.yaml"), "--no-progress", "--threads", "1"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert "on the training set (no test set: give --test FILE" in last and "votes in the" not in last
    # `slidepy evaluate` on the training file builds the bank from that file (the config's data.train),
    # loaded apart: the same file, so the votes stay out there too
    trained = [json.loads(line) for line in open(tmp_path / "cli" / "metrics.jsonl") if '"eval"' in line][-1]
    checkpoint = sorted((tmp_path / "cli" / "checkpoints").glob("step-*.npz"))[-1]
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "train.txt"),
                                       "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "train.txt is the training set of the neighbours' votes" in result.output
    scored = json.loads(result.output.strip().splitlines()[-1])["P@1"]
    assert scored == pytest.approx(trained["P@1"]) and scored < 1.0
    # a copy of the training file under another name holds the same samples: no votes either
    (tmp_path / "copy.txt").write_bytes((tmp_path / "train.txt").read_bytes())
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "copy.txt"),
                                       "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "copy.txt is the training set of the neighbours' votes" in result.output
    assert json.loads(result.output.strip().splitlines()[-1])["P@1"] == pytest.approx(trained["P@1"])


def test_each_evaluation_builds_a_bank_and_only_the_last_keeps_it(tiny_config, one_thread):
    tiny_config["model"]["neighbours"] = {"k": 3, "weight": 0.3}
    tiny_config["training"]["epochs"] = 3  # eval.every 0: an evaluation at each epoch's end
    banks = []
    trainer = Trainer(load_config(tiny_config), progress=False,
                      callbacks=[lambda t, record: banks.append(t.engine.neighbours) if record["event"] == "eval" else 0])
    trainer.fit()
    assert len(banks) >= 2 and all(b is None for b in banks[:-1])  # dropped before training went on
    assert banks[-1] is trainer.engine.neighbours is not None  # the final weights' bank, for predict
    hidden = np.zeros_like(banks[-1].vectors)
    trainer.engine.last_hidden(trainer.train_data, np.arange(trainer.train_data.n_samples), hidden)
    np.testing.assert_allclose(banks[-1].vectors, unit_rows(hidden), rtol=1e-6)


def test_a_run_with_a_sampled_bank_votes_from_that_many_samples(tiny_config, one_thread):
    """model.neighbours.bank_samples reaches the trainer's banks: the final one holds that many
    training samples, and predictions blend their votes (scores are then probabilities)."""
    n_train = tiny_config["data"]["synthetic"]["n_train"]
    tiny_config["model"]["neighbours"] = {"k": 3, "weight": 0.3, "bank_samples": n_train // 2}
    trainer = Trainer(load_config(tiny_config), progress=False)
    trainer.fit()
    assert trainer.engine.neighbours.vectors.shape[0] == n_train // 2
    _, scores = trainer.model.predict(trainer.test_data, k=3)
    assert np.all((scores >= 0) & (scores <= 1))


def _trained_with_votes(tiny_config, tmp_path):
    """(checkpoint, training file, test file) of a 2-step CLI run with the neighbours' votes on a
    generated set (50 features, 20 labels) written to files."""
    from slidepy.data import write_dataset
    from slidepy.synthetic import make_synthetic

    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    data, held_out = make_synthetic(300, 60, 50, 20, seed=1)
    write_dataset(data, train)
    write_dataset(held_out, test)
    tiny_config["data"] = {"train": str(train)}
    tiny_config["model"]["neighbours"] = {"weight": 0.3}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    assert CliRunner().invoke(main, ["train", "--config", str(path), "--no-progress", "--threads", "1",
                                     "--set", "training.max_steps=2"]).exit_code == 0
    return sorted((tmp_path / "run" / "checkpoints").glob("step-*.npz"))[-1], train, test


def test_evaluate_without_the_training_data_says_so(tiny_config, tmp_path):
    checkpoint, train, _ = _trained_with_votes(tiny_config, tmp_path)
    copy = tmp_path / "again.txt"
    copy.write_bytes(train.read_bytes())
    train.unlink()
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(copy)])
    assert result.exit_code == 0, result.output
    assert "neighbours' votes are left out" in result.output


def test_evaluate_with_another_training_file_of_more_labels_leaves_the_votes_out(tiny_config, tmp_path):
    """The votes' training file replaced by one with more labels than the model scores: its votes
    would index past the output layer (a segfault before), so the network scores alone, saying so."""
    from slidepy.data import write_dataset
    from slidepy.synthetic import make_synthetic

    checkpoint, train, test = _trained_with_votes(tiny_config, tmp_path)
    wider, _ = make_synthetic(300, 10, 50, 5000, seed=2)  # label ids up to 4,999, the model has 20
    write_dataset(wider, train)
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--data", str(test)])
    assert result.exit_code == 0, result.output
    assert "5000 labels but the model scores 20" in result.output
    assert "neighbours' votes are left out" in result.output


def test_memory_estimate_counts_the_bank(tiny_config):
    """The estimate's bank is the real bank's vectors, whole or sampled, plus one block of
    similarities (bank_block keeps a block's (B, S) float32 similarities within BLOCK_FLOATS)."""
    from slidepy.memory import estimate_for_config
    from slidepy.neighbours import bank_block
    from slidepy.scoring import BLOCK_FLOATS

    off = estimate_for_config(load_config(tiny_config), threads=1).parts["neighbour bank"]
    assert off == 0
    tiny_config["model"]["neighbours"] = {"weight": 0.3}
    trainer = Trainer(load_config(tiny_config), progress=False)  # built, not trained: the bank's size is its shape's
    n_train = trainer.train_data.n_samples
    for samples in (None, n_train // 4):
        tiny_config["model"]["neighbours"]["bank_samples"] = samples
        estimate = estimate_for_config(load_config(tiny_config), threads=1).parts["neighbour bank"]
        bank = build_bank(trainer.engine, trainer.train_data, 25, 0.3, 0.05, samples=samples)
        assert bank.vectors.shape[0] == (samples or n_train)
        block = bank_block(bank, trainer.engine.n_labels) * bank.vectors.shape[0] * 4  # a block's similarities
        assert block <= BLOCK_FLOATS * 4
        assert estimate == bank.vectors.nbytes + BLOCK_FLOATS * 4
    # beside the hidden space (auto), or in its stead (input), the input rows' postings: the bank
    # samples' non-zeros, 8 bytes each, as built
    train = trainer.train_data
    width = trainer.engine.sizes[-1][0]
    for space, samples in (("auto", None), ("input", None), ("input", n_train // 4)):
        tiny_config["model"]["neighbours"] = {"weight": 0.3, "space": space, "bank_samples": samples}
        estimate = estimate_for_config(load_config(tiny_config), threads=1, train=train).parts["neighbour bank"]
        bank = build_bank(trainer.engine, train, 25, 0.3, 0.05, space=space, samples=samples)
        postings = bank.postings.rows.nbytes + bank.postings.values.nbytes + bank.postings.indptr.nbytes
        vectors = (samples or n_train) * width * 4 if space == "auto" else 0
        assert bank.vectors.nbytes == (vectors if bank.space == "hidden" else 0)
        assert 0 <= estimate - (vectors + BLOCK_FLOATS * 4 + postings) <= 0.1 * postings, (space, samples)


def test_lsh_recall_is_against_the_network_alone(tiny_config, one_thread):
    """The index retrieves by logits: its recall diagnostic must not change when votes are on."""
    trainer = Trainer(load_config(tiny_config, ["training.max_steps=20"]), progress=False)
    trainer.fit()
    rows = np.arange(64)
    plain = trainer.engine.lsh_diagnostics(trainer.test_data, rows)
    trainer.engine.neighbours = build_bank(trainer.engine, trainer.train_data, 1, 1.0, 0.05)
    voted = trainer.engine.lsh_diagnostics(trainer.test_data, rows)
    assert voted["lsh_recall@10"] == plain["lsh_recall@10"]
    assert trainer.engine.neighbours is not None  # the bank is back for predictions
    ids_plain = trainer.engine.predict(trainer.test_data, rows, k=1, use_lsh=False)[0]
    trainer.engine.neighbours = None
    assert not np.array_equal(ids_plain, trainer.engine.predict(trainer.test_data, rows, k=1, use_lsh=False)[0])
