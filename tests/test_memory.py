"""memory.estimate_for_config against the bytes a built model really holds: the estimate derives
its sizes from shape functions (network.param_shapes, scratch_shapes, lsh.index_layout) without
allocating anything; here the arrays are allocated (Model.build, a training step, a prediction)
and their nbytes summed, so a shape function that drifts from its allocator shows."""

import copy

import numpy as np
import pytest

from conftest import TINY
from slidepy import load_config, make_synthetic
from slidepy.memory import estimate_for_config
from slidepy import engine as engine_module
from slidepy.model import Model
from slidepy.union import union_output_step

_INDEX_ARRAYS = ("buckets", "counts", "codes", "centroids_t", "cluster_indptr", "cluster_members")


def _built(optimizer, family, tmp_path):
    raw = copy.deepcopy(TINY)
    raw["output"]["run_dir"] = str(tmp_path / "run")
    raw["training"]["optimizer"] = optimizer
    lsh = raw["model"]["output"]["selection"]["lsh"]
    if family == "kmeans":
        for key in ("k", "l", "range_pow", "bucket_capacity"):
            lsh.pop(key)
        lsh.update(family="kmeans", clusters=12)
    cfg = load_config(raw)
    s = cfg.data.synthetic
    train, test = make_synthetic(s.n_train, s.n_test, s.n_features, s.n_labels, nnz_per_sample=s.nnz_per_sample,
                                 labels_per_sample=tuple(s.labels_per_sample), seed=s.seed)
    model = Model.build(cfg, train.n_features, train.n_labels, max_labels=s.labels_per_sample[1])
    return cfg, model.engine, train, test


@pytest.mark.parametrize("optimizer,family", [("adam", "srp"), ("sgd", "srp"), ("adam", "kmeans")])
def test_estimate_counts_what_a_built_model_holds(one_thread, tmp_path, monkeypatch, optimizer, family):
    cfg, engine, train, test = _built(optimizer, family, tmp_path)
    parts = estimate_for_config(cfg, threads=1).parts

    # weights, biases, their gradients and the optimizer's moments (none under SGD), touched marks
    held = sum(array.nbytes for layer in engine.layers for array in layer)
    assert parts["parameters + gradients + optimizer"] == held
    if optimizer == "adam":  # 4 float32 copies of every weight (value, gradient, 2 moments): 4 x 4 bytes
        n_weights = sum(layer.weights.size for layer in engine.layers)
        assert held > 16 * n_weights
    else:
        assert all(layer.weight_m.size == 0 for layer in engine.layers)

    # a training step and a prediction allocate the per-chunk scratch (one set each) and, with Adam
    # over a dense hidden layer, the batch's output gradient records and, on a step whose samples
    # share their output neurons, the union's buffers and products (union.py)
    unions = []

    def measured(*args, **kwargs):
        result = union_output_step(*args, **kwargs)
        unions.append(result.union_rows)
        return result

    monkeypatch.setattr(engine_module, "union_output_step", measured)
    engine.train_step(train, np.arange(cfg.training.batch_size, dtype=np.int64))
    engine.predict(test, np.arange(100, dtype=np.int64), k=5)
    assert len(engine._scratch) == 2
    scratch = sum(array.nbytes for chunks in engine._scratch.values() for layer in chunks for array in layer)
    assert parts["per-thread scratch"] == scratch
    records = 0 if engine._records is None else sum(array.nbytes for array in engine._records)
    assert parts["output gradient records"] == records and (records > 0) == (optimizer == "adam")
    assert (parts["output products (a step's union)"] > 0) == (optimizer == "adam") == bool(unions)
    if unions:  # the step's products: W_U and dW (U, D), Z and G (B, U), dH (B, D), the rows (U,) int64
        b, (n, d) = cfg.training.batch_size, engine.layers[1].weights.shape
        step = sum(a.nbytes for a in engine._union) + 4 * (2 * unions[0] * d + 2 * b * unions[0] + b * d) + 8 * unions[0]
        assert step <= parts["output products (a step's union)"] <= step + 12 * (b + d) * n, (step, parts)

    # the output layer's index: its tables (or clusters) and codes, plus at most one more copy of
    # the codes, which a rebuild makes
    index = engine.lsh[1]
    resident = sum(getattr(index, name).nbytes for name in _INDEX_ARRAYS)
    assert resident <= parts["LSH tables + code buffers"] <= resident + index.codes.nbytes, (resident, parts)

    # the parsed data: an upper bound (it counts every sample at the most labels)
    data = sum(getattr(ds, name).nbytes for ds in (train, test)
               for name in ("x_indptr", "x_indices", "x_values", "y_indptr", "y_indices"))
    assert data <= parts["dataset (parsed)"] <= 1.5 * data


def test_an_estimate_without_dimensions_says_unknown_instead_of_a_total_of_0(tmp_path):
    from slidepy.configfile import config_from_dict
    from slidepy.memory import estimate_for_config

    headerless = tmp_path / "train.svm"
    headerless.write_text("0 1:1\n1 2:1\n")
    cfg = config_from_dict({"data": {"train": str(headerless)}})
    report = estimate_for_config(cfg).report()
    assert "unknown" in report and "total" not in report
