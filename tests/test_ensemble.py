"""Ensembles (slidepy/ensemble.py, `evaluate`/`predict` with several --checkpoint): the mean of the
members' probabilities, ranked, against a NumPy reference."""

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

import naive
from slidepy.cli import main
from slidepy.engine import Engine, LayerSelection
from slidepy.ensemble import ensemble_topk
from slidepy.neighbours import build_bank
from slidepy.synthetic import make_synthetic


def _engine(seed, loss="softmax", hidden=(12,), n_features=40, n_labels=30):
    sel = [LayerSelection() for _ in range(len(hidden) + 1)]
    eng = Engine(n_features, list(hidden), n_labels, sel, loss=loss, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for layer in eng.layers:  # random biases too, so that they matter in the reference
        layer.bias[:] = rng.standard_normal(layer.bias.shape).astype(np.float32)
    return eng


def _reference(engines, data, k):
    """Mean over the engines of softmax (or sigmoid) of the dense float64 forward's logits, top-k."""
    x = naive.naive_dense_rows(data.x_indptr, data.x_indices, data.x_values, data.n_features,
                               np.arange(data.n_samples))
    total = 0.0
    for eng in engines:
        params = [(l.weights.astype(np.float64), l.bias.astype(np.float64)) for l in eng.layers]
        logits = naive.naive_forward(params, x)[0][-1]
        if eng.loss == "softmax":
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            total = total + e / e.sum(axis=1, keepdims=True)
        else:
            total = total + 1.0 / (1.0 + np.exp(-logits))
    return naive.naive_topk(total / len(engines), k)


@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("members", [1, 3])
def test_ensemble_topk_matches_numpy_mean_of_probabilities(loss, members):
    data = make_synthetic(70, 0, 40, 30, nnz_per_sample=6, seed=3)[0]
    engines = [_engine(s, loss) for s in range(members)]
    ids, vals = ensemble_topk(engines, data, k=5)
    want_ids, want_vals = _reference(engines, data, 5)
    np.testing.assert_allclose(vals, want_vals, rtol=1e-4, atol=1e-6)
    # ids agree wherever the reference's neighbouring probabilities are not float32-close
    clear = np.abs(np.diff(want_vals, axis=1)).min(axis=1) > 1e-5
    assert clear.sum() > data.n_samples // 2
    np.testing.assert_array_equal(ids[clear], want_ids[clear])


def test_one_member_ranks_like_the_model_itself():
    data = make_synthetic(50, 0, 40, 30, nnz_per_sample=6, seed=4)[0]
    eng = _engine(7)
    ids, _ = ensemble_topk([eng], data, k=4)
    own, _, _ = eng.predict(data, k=4)
    np.testing.assert_array_equal(ids, own)


def test_a_samples_scores_do_not_depend_on_the_samples_scored_beside_it():
    """The members' products run in whole row tiles (scoring.tiled_logits), as exact scoring's do:
    the same scores, to the rounding that BLAS allows (test_scoring)."""
    data = make_synthetic(150, 0, 40, 30, nnz_per_sample=6, seed=5)[0]
    engines = [_engine(s) for s in range(2)]
    full_ids, full_vals = ensemble_topk(engines, data, k=5)
    for rows in (np.arange(1), np.arange(3, 20), np.arange(5, 5 + 67)):
        ids, vals = ensemble_topk(engines, data, rows, k=5)
        naive.assert_same_topk(ids, vals, full_ids[rows], full_vals[rows])


def test_members_with_neighbours_votes_add_their_blended_scores():
    """A member with a bank attached contributes what it predicts alone, its softmax blended with
    its own neighbours' votes (the first in the hidden space, the second in the input space); the
    mean over members against the NumPy references."""
    data = make_synthetic(70, 0, 40, 30, nnz_per_sample=6, seed=6)[0]
    bank_data = make_synthetic(25, 0, 40, 30, nnz_per_sample=6, seed=7)[0]
    engines = [_engine(s) for s in range(3)]
    for e, weight, space in zip(engines[:2], (0.3, 0.7), ("hidden", "input")):  # the third: no votes
        e.neighbours = build_bank(e, bank_data, k=5, weight=weight, temperature=0.05, space=space)
    ids, vals = ensemble_topk(engines, data, k=5)
    x = naive.naive_dense_rows(data.x_indptr, data.x_indices, data.x_values, data.n_features,
                               np.arange(data.n_samples))
    bank_x = naive.naive_dense_rows(bank_data.x_indptr, bank_data.x_indices, bank_data.x_values,
                                    bank_data.n_features, np.arange(bank_data.n_samples))
    total = 0.0
    for e in engines:
        params = [(l.weights.astype(np.float64), l.bias.astype(np.float64)) for l in e.layers]
        hidden = naive.naive_forward(params, x)[1][-2].astype(np.float32)  # the last hidden activations
        if e.neighbours is None:
            logits = hidden.astype(np.float64) @ params[-1][0].T + params[-1][1]
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            total = total + p / p.sum(axis=1, keepdims=True)
        else:
            sims = naive.naive_input_cosine(x, bank_x) if e.neighbours.space == "input" else None
            total = total + naive.naive_blend(hidden, e.layers[-1].weights, e.layers[-1].bias, e.neighbours, sims)
    want_ids, want_vals = naive.naive_topk(total / 3, 5)
    np.testing.assert_allclose(vals, want_vals, rtol=1e-4, atol=1e-6)
    clear = np.abs(np.diff(want_vals, axis=1)).min(axis=1) > 1e-5
    assert clear.sum() > data.n_samples // 2
    np.testing.assert_array_equal(ids[clear], want_ids[clear])
    # and one member alone ranks as its own prediction with the votes does
    alone_ids, alone_vals = ensemble_topk(engines[:1], data, k=5)
    own_ids, own_vals, _ = engines[0].predict(data, k=5)
    np.testing.assert_array_equal(alone_ids, own_ids)
    np.testing.assert_allclose(alone_vals, own_vals, rtol=1e-6)


def test_members_must_agree_on_labels():
    data = make_synthetic(10, 0, 40, 30, nnz_per_sample=6, seed=4)[0]
    with pytest.raises(ValueError, match="same labels"):
        ensemble_topk([_engine(0), _engine(1, n_labels=31)], data)
    # ... take the data's features (a narrower member read past its input layer: ids of -1), be
    # at least one, and rank at least one label (k 0 wrote before the top-k buffer)
    with pytest.raises(ValueError, match="40 features, the network 32"):
        ensemble_topk([_engine(0), _engine(1, n_features=32)], data)
    with pytest.raises(ValueError, match="at least one engine"):
        ensemble_topk([], data)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            ensemble_topk([_engine(0)], data, k=k)
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            _engine(0).predict(data, k=k)


def test_cli_scores_an_ensemble_of_checkpoints(tiny_config, tmp_path):
    runner = CliRunner()
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config))
    checkpoints = []
    for seed in (0, 1):
        out = tmp_path / f"member-{seed}"
        result = runner.invoke(main, ["train", "--config", str(config_file), "--out", str(out), "--no-progress",
                                      "--set", f"training.seed={seed}", "--threads", "1"])
        assert result.exit_code == 0, result.output
        checkpoints.append(str(sorted((out / "checkpoints").glob("step-*.npz"))[-1]))
    test_file = tmp_path / "test.txt"
    gen = runner.invoke(main, ["datagen", "--out", str(tmp_path / "train.txt"), "--test-out", str(test_file),
                               "--n-train", "20", "--n-test", "30", "--features", "400", "--labels", "150"])
    assert gen.exit_code == 0, gen.output
    both = ["--checkpoint", checkpoints[0], "--checkpoint", checkpoints[1]]
    ev = runner.invoke(main, ["evaluate", *both, "--data", str(test_file), "--json"])
    assert ev.exit_code == 0, ev.output
    assert '"P@1"' in ev.output
    pred = tmp_path / "pred.txt"
    pr = runner.invoke(main, ["predict", *both, "--data", str(test_file), "--top-k", "2", "--out", str(pred), "--ids"])
    assert pr.exit_code == 0, pr.output
    lines = pred.read_text().splitlines()
    assert len(lines) == 30
    scores = [float(tok.split(":")[1]) for line in lines for tok in line.split()]
    assert all(0.0 < s <= 1.0 for s in scores)  # mean probabilities, not logits
    refused = runner.invoke(main, ["evaluate", *both, "--data", str(test_file), "--lsh"])
    assert refused.exit_code == 2 and "scored exactly" in refused.output
    # one model: --lsh scores its index's picks; a model without an index scores as it does
    # without --lsh (its votes were left out before, as if --lsh meant something), and says so
    assert runner.invoke(main, ["evaluate", *both[:2], "--data", str(test_file), "--lsh"]).exit_code == 0
    out = tmp_path / "no-index"
    result = runner.invoke(main, ["train", "--config", str(config_file), "--out", str(out), "--no-progress",
                                  "--set", "model.output.selection.mode=all", "--threads", "1", "--set", "training.max_steps=1",
                                  "--set", "model.neighbours.k=3", "--set", "model.neighbours.weight=0.5"])
    assert result.exit_code == 0, result.output
    no_index = str(sorted((out / "checkpoints").glob("step-*.npz"))[-1])
    for command in ("evaluate", "predict"):
        plain = runner.invoke(main, [command, "--checkpoint", no_index, "--data", str(test_file)])
        noted = runner.invoke(main, [command, "--checkpoint", no_index, "--data", str(test_file), "--lsh"])
        assert plain.exit_code == noted.exit_code == 0 and "have no index" in noted.stderr
        assert noted.stdout == plain.stdout


def test_cli_ensemble_members_keep_their_neighbours_votes(tiny_config, tmp_path):
    """`evaluate` with one model named twice is that model: with model.neighbours on, the mean of
    two equal blended distributions, as the model scores alone (the votes were dropped before)."""
    runner = CliRunner()
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config))
    out = tmp_path / "voted"
    result = runner.invoke(main, ["train", "--config", str(config_file), "--out", str(out), "--no-progress",
                                  "--threads", "1", "--set", "model.neighbours.weight=0.7"])
    assert result.exit_code == 0, result.output
    checkpoint = str(sorted((out / "checkpoints").glob("step-*.npz"))[-1])
    test_file = tmp_path / "test.txt"
    gen = runner.invoke(main, ["datagen", "--out", str(tmp_path / "train.txt"), "--test-out", str(test_file),
                               "--n-train", "20", "--n-test", "60", "--features", "400", "--labels", "150"])
    assert gen.exit_code == 0, gen.output
    scores = {}
    for name, args in (("alone", ["--checkpoint", checkpoint]),
                       ("twice", ["--checkpoint", checkpoint, "--checkpoint", checkpoint])):
        ev = runner.invoke(main, ["evaluate", *args, "--data", str(test_file), "--json"])
        assert ev.exit_code == 0 and "votes are left out" not in ev.output, ev.output
        scores[name] = json.loads(ev.stdout)
    assert scores["twice"] == pytest.approx(scores["alone"], abs=1e-12)
    from slidepy import Trainer, load_dataset

    trained = Trainer.load(checkpoint)
    network_alone = trained.model.engine.predict(load_dataset(test_file, n_features=400, n_labels=150), k=5)[0]
    assert trained.model.engine.neighbours is None  # so the network's own ranking, without votes
    twice = runner.invoke(main, ["predict", "--checkpoint", checkpoint, "--checkpoint", checkpoint, "--data",
                                 str(test_file), "--top-k", "5", "--ids"])
    voted = [[int(tok.split(":")[0]) for tok in line.split()] for line in twice.stdout.splitlines()]
    assert voted != network_alone.tolist()  # the votes moved some ranking
