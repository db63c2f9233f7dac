"""slidepy.sklearn.SlideClassifier: scikit-learn's own estimator checks, a text Pipeline,
GridSearchCV, the target formats, and a pipeline saved for `slidepy predict --text`."""

import pathlib
import pickle
import re
import subprocess
import sys

import numba
import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
sp = pytest.importorskip("scipy.sparse")

from click.testing import CliRunner  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MultiLabelBinarizer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from slidepy.cli import main  # noqa: E402
from slidepy.configfile import load_config  # noqa: E402
from slidepy.sklearn import SlideClassifier, save_model  # noqa: E402

# Settings for scikit-learn's checks: their data sets have 20-300 samples and 2-5 classes, so
# many small steps; one thread, deterministic, so that refits and pickles give identical output.
CHECKED = SlideClassifier(hidden=32, epochs=30, batch_size=32, lr=0.01, threads=1,
                          config={"training.deterministic": True, "eval.subset": 50, "eval.recall_samples": 0})

# Checks that cannot apply to SlideClassifier. None fails; these are skipped by scikit-learn
# itself (the test shows them as skipped), and each is listed here with the reason:
#   check_array_api_input: slidepy runs Numba kernels on NumPy arrays; array-API inputs (CuPy,
#       torch) are not accepted (the check also needs SCIPY_ARRAY_API=1).
#   check_classifiers_multilabel_output_format_predict_proba, and the predict_proba halves of
#       check_classifier_multioutput / check_decision_proba_consistency: there is no
#       predict_proba; with the softmax loss the output is one distribution over all labels,
#       not a probability per label, so calling it one would mislead. decision_function and
#       predict_topk give the scores.
#   sample_weight checks (check_sample_weights_*, check_classifiers_one_label_sample_weights):
#       fit takes no sample_weight (the trainer has no per-sample weighting).
EXPECTED_FAILED_CHECKS: dict = {}


def _expected_failed(estimator):
    return EXPECTED_FAILED_CHECKS


_kwargs = {"expected_failed_checks": _expected_failed} if "expected_failed_checks" in \
    parametrize_with_checks.__code__.co_varnames else {}


@parametrize_with_checks([CHECKED], **_kwargs)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- a small text data set: each label has its own words, documents mix 1-2 labels -------------

LABELS = ["libc6", "python3", "perl", "libssl3", "zlib1g", "libgtk-3-0", "default-jre", "ruby"]


def _corpus(n, seed):
    rng = np.random.default_rng(seed)
    words = {lab: [f"{lab.replace('-', '')}w{j}" for j in range(6)] for lab in LABELS}
    noise = [f"common{j}" for j in range(30)]
    texts, labels = [], []
    for _ in range(n):
        labs = list(rng.choice(LABELS, size=rng.integers(1, 3), replace=False))
        toks = [w for lab in labs for w in rng.choice(words[lab], size=4)] + list(rng.choice(noise, size=5))
        rng.shuffle(toks)
        texts.append(" ".join(toks))
        labels.append(labs)
    return texts, labels


@pytest.fixture(scope="module")
def text_data():
    return _corpus(600, 0), _corpus(200, 1)


def _small(**kw):
    base = dict(hidden=32, epochs=8, batch_size=32, lr=0.01, threads=1, budget=4,
                config={"training.deterministic": True, "eval.subset": 50})
    base.update(kw)
    return SlideClassifier(**base)


def test_text_pipeline_and_grid_search(text_data):
    (x_train, y_train), (x_test, y_test) = text_data
    pipe = make_pipeline(TfidfVectorizer(), _small())
    pipe.fit(x_train, y_train)
    clf = pipe[-1]
    assert list(clf.classes_) == sorted(LABELS)
    assert pipe.score(x_test, y_test) > 0.8  # P@1
    ids, scores = clf.predict_topk(pipe[:-1].transform(x_test), 3)
    assert ids.shape == scores.shape == (200, 3) and np.all(np.diff(scores, axis=1) <= 0)
    p1 = np.mean([clf.classes_[ids[i, 0]] in y_test[i] for i in range(200)])
    assert p1 == pytest.approx(pipe.score(x_test, y_test))
    pred = pipe.predict(x_test)
    assert sp.issparse(pred) and pred.shape == (200, len(LABELS)) and np.all(pred.sum(axis=1) == 1)

    # scikit-learn's cross-validation splitters read y with type_of_target, which rejects lists
    # of label lists: give GridSearchCV an indicator matrix (or an explicit cv=KFold(...)).
    mlb = MultiLabelBinarizer(sparse_output=True).fit(y_train)
    grid = GridSearchCV(make_pipeline(TfidfVectorizer(), _small(epochs=4)),
                        {"slideclassifier__hidden": [16, 48]}, cv=2)
    grid.fit(x_train, mlb.transform(y_train))
    assert set(grid.cv_results_["param_slideclassifier__hidden"]) == {16, 48}
    assert grid.best_score_ > 0.5 and grid.score(x_test, mlb.transform(y_test)) > 0.5


def test_target_formats_give_the_same_model(text_data):
    (x_train, y_train), (x_test, _) = text_data
    vec = TfidfVectorizer().fit(x_train)
    X, Xt = vec.transform(x_train), vec.transform(x_test)
    mlb = MultiLabelBinarizer(sparse_output=True).fit(y_train)
    Y = mlb.transform(y_train)
    by_lists = _small(predict_k=2).fit(X, y_train)
    by_matrix = _small(predict_k=2).fit(X, Y)
    by_dense = _small(predict_k=2).fit(X.toarray(), Y.toarray())
    np.testing.assert_array_equal(by_lists.predict_topk(Xt, 4)[0], by_matrix.predict_topk(Xt, 4)[0])
    np.testing.assert_array_equal(by_dense.predict_topk(Xt.toarray(), 4)[0], by_matrix.predict_topk(Xt, 4)[0])
    as_objects = np.empty(len(y_train), dtype=object)  # a pandas Series of tag lists is such an array
    as_objects[:] = [list(row) for row in y_train]
    by_objects = _small(predict_k=2).fit(X, as_objects)
    np.testing.assert_array_equal(by_objects.predict_topk(Xt, 4)[0], by_lists.predict_topk(Xt, 4)[0])
    assert by_objects.score(X, as_objects) == by_lists.score(X, y_train)
    assert sp.issparse(by_matrix.predict(Xt)) and isinstance(by_dense.predict(Xt.toarray()), np.ndarray)
    decision = by_matrix.decision_function(Xt)
    np.testing.assert_array_equal((decision > 0).astype(int), by_matrix.predict(Xt).toarray())
    assert by_lists.score(Xt, [list(mlb.classes_[r.indices]) for r in mlb.transform(_corpus(200, 1)[1])]) == \
        pytest.approx(by_matrix.score(Xt, mlb.transform(_corpus(200, 1)[1])))
    params = by_lists.get_params()
    assert clone(by_lists).get_params() == params
    cfg = by_lists.set_params(hidden=(8, 4), lr=0.5).config_dict()
    assert cfg["model"]["hidden"] == [8, 4] and cfg["training"]["lr"] == 0.5


def test_hash_parameters_beside_the_kmeans_index_are_warned_about(text_data):
    """lsh_k / lsh_l size the hash families' tables; set beside the default k-means index they did
    nothing without a word (the README's own example did so)."""
    (x_train, y_train), _ = text_data
    X = TfidfVectorizer().fit_transform(x_train)
    with pytest.warns(UserWarning, match=r"lsh_k=8, lsh_l=32 apply to the hash families"):
        _small(lsh_k=8, lsh_l=32).fit(X, y_train)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*apply to the hash families")
        _small(lsh_family="srp", lsh_k=8, lsh_l=32).fit(X, y_train)
        _small().fit(X, y_train)


def test_params_map_to_the_config():
    """The default index is the k-means one (hash settings do not apply to it); a hash family
    keeps k, l and a range_pow that follows k; dropout reaches model.dropout."""
    default = SlideClassifier().config_dict()
    assert default["model"]["output"]["selection"]["lsh"] == {"family": "kmeans"}
    assert default["model"]["dropout"] == 0.0
    srp = SlideClassifier(lsh_family="srp", lsh_k=5, lsh_l=8, dropout=0.5).config_dict()
    assert srp["model"]["output"]["selection"]["lsh"] == {"family": "srp", "k": 5, "l": 8, "range_pow": 5}
    assert srp["model"]["dropout"] == 0.5
    load_config(srp)  # valid as a whole


def test_neighbours_params_reach_the_predictions(text_data):
    """neighbours_* map to model.neighbours, and with k 1 at full weight each training document
    predicts its own labels first (its nearest bank sample is itself)."""
    cfg = SlideClassifier(neighbours_weight=0.3, neighbours_k=7, neighbours_space="auto").config_dict()
    assert cfg["model"]["neighbours"] == {"k": 7, "weight": 0.3, "space": "auto"}
    (x_train, y_train), _ = text_data
    X = TfidfVectorizer().fit_transform(x_train)
    for space in ("hidden", "input"):
        clf = _small(epochs=2, neighbours_weight=1.0, neighbours_k=1, neighbours_space=space).fit(X, y_train)
        assert clf.trainer_.engine.neighbours.space == space
        ids, scores = clf.predict_topk(X, 1)
        assert np.mean([clf.classes_[ids[i, 0]] in y_train[i] for i in range(len(y_train))]) > 0.97
        assert np.all((scores > 0) & (scores <= 1.0 + 1e-6))  # blended probabilities, not logits
    # a copy keeps the input space's bank and scores the same
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_topk(X, 1)[0], ids)


def test_bad_params_are_value_errors(text_data):
    (x_train, y_train), _ = text_data
    X = TfidfVectorizer().fit_transform(x_train)
    with pytest.raises(ValueError, match="training.lr"):
        _small(lr=-1.0).fit(X, y_train)
    with pytest.raises(ValueError, match="selection"):
        _small(selection="magic").fit(X, y_train)
    for k in (0, 2.5, True):  # refused before the training, naming the parameter
        with pytest.raises(ValueError, match=rf"^predict_k: expected an int >= 1, got {k!r}$"):
            _small(predict_k=k).fit(X, y_train)
    fitted = _small().fit(X, y_train).set_params(predict_k=0)
    with pytest.raises(ValueError, match="k must be an int >= 1"):  # it corrupted the heap
        fitted.predict(X)
    # score's indicator columns are the fitted classes: another count is another label set
    Y = MultiLabelBinarizer(classes=fitted.classes_).fit_transform(y_train)
    assert 0 <= fitted.score(X, Y) <= 1
    with pytest.raises(ValueError, match=f"y has {2 * Y.shape[1]} label columns but the model was fitted with "
                                         f"{Y.shape[1]}"):
        fitted.score(X, np.hstack([Y, Y]))


def test_ctrl_c_in_fit_is_a_keyboard_interrupt(text_data, monkeypatch):
    """Not the ValueError of slidepy's other errors, which GridSearchCV would score as nan and go
    on past; and naming no checkpoint of the temporary run directory it deletes."""
    from slidepy.trainer import Trainer

    (x_train, y_train), _ = text_data
    X = TfidfVectorizer().fit_transform(x_train)
    real = Trainer.train_step

    def stop_at_the_third(self):
        if self.step == 2:
            self.stop_request.signum = 2  # what the SIGINT handler sets
        return real(self)

    monkeypatch.setattr(Trainer, "train_step", stop_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        GridSearchCV(_small(), {"lr": [0.01, 0.02]}, cv=2).fit(X, MultiLabelBinarizer().fit_transform(y_train))


def test_a_saved_model_with_votes_is_scored_by_the_cli_without_a_bank_from_other_data(text_data, tmp_path):
    """Its config names no data file (scikit-learn handed the sets in): the CLI leaves the votes
    out, saying so, where it built their bank from the config's default generated data."""
    (x_train, y_train), (x_test, y_test) = text_data
    vectorizer = TfidfVectorizer().fit(x_train)
    clf = _small(neighbours_weight=0.5).fit(vectorizer.transform(x_train), y_train)
    model = tmp_path / "model.npz"
    clf.save(model, vectorizer=vectorizer)
    res = CliRunner().invoke(main, ["predict", "--checkpoint", str(model), "--text", x_test[0], "--ids", "--top-k", "3"])
    assert res.exit_code == 0, res.output
    assert "trained on data handed in from Python" in res.stderr and "the network scores alone" in res.stderr
    from slidepy.sklearn import to_dataset

    data = to_dataset(vectorizer.transform(x_test[:1]).astype(np.float32).tocsr(), len(clf.classes_))
    ids, _, _ = clf.trainer_.engine.predict(data, k=3, votes=False)
    assert [int(t.split(":")[0]) for t in res.stdout.split()] == ids[0].tolist()


def test_saved_pipeline_predicts_text_from_the_cli(text_data, tmp_path):
    (x_train, y_train), (x_test, _) = text_data
    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), _small())
    pipe.fit(x_train, y_train)
    # the stored vectorizer featurises exactly as scikit-learn's
    from slidepy.sklearn import text_features_from_vectorizer

    feats = text_features_from_vectorizer(pipe[0])
    indptr, indices, values = feats.transform(x_test[:20])
    ref = pipe[0].transform(x_test[:20]).tocsr()
    ref.sort_indices()
    np.testing.assert_array_equal(indptr, ref.indptr)
    np.testing.assert_array_equal(indices, ref.indices)
    np.testing.assert_allclose(values, ref.data, rtol=1e-6)

    model = tmp_path / "model.npz"
    save_model(pipe, model)
    res = CliRunner().invoke(main, ["predict", "--checkpoint", str(model), "--text", x_test[0],
                                    "--text", x_test[1], "--top-k", "3"])
    assert res.exit_code == 0, res.output
    ids, scores = pipe[-1].predict_topk(pipe[0].transform(x_test[:2]), 3)
    want = [" ".join(f"{pipe[-1].classes_[i]}:{s:.6g}" for i, s in zip(r_ids, r_sc))
            for r_ids, r_sc in zip(ids, scores)]
    assert res.output.splitlines() == want
    # a pipeline whose first step is no word vectorizer: saved without it, the message says how
    from sklearn.preprocessing import MaxAbsScaler

    scaled = make_pipeline(MaxAbsScaler(), pipe[-1])
    with pytest.raises(ValueError, match=r"not MaxAbsScaler: .* save pipeline\[-1\] \(the SlideClassifier\)"):
        save_model(scaled, tmp_path / "scaled.npz")

    bare = tmp_path / "bare.npz"
    pipe[-1].trainer_.save(bare)  # no vectorizer, no names
    res = CliRunner().invoke(main, ["predict", "--checkpoint", str(bare), "--text", "python3 things"])
    assert res.exit_code == 2 and "holds no text vectorizer" in res.output and "save_model" in res.output


@pytest.mark.parametrize("votes,leaves", [(0.0, 0.0), (0.5, 0.0), (0.5, 0.3), (0.5, "auto")])
def test_pickle_round_trip(text_data, votes, leaves):
    """A pickled estimator scores as the original, the neighbours' votes included (model files
    leave the bank out) and the re-ranking leaves (model files keep them)."""
    import pickle

    (x_train, y_train), (x_test, _) = text_data
    pipe = make_pipeline(TfidfVectorizer(), _small(epochs=2, neighbours_weight=votes, reranker_weight=leaves))
    pipe.fit(x_train, y_train)
    assert (pipe[-1].trainer_.engine.neighbours is not None) == (votes > 0)
    assert (pipe[-1].trainer_.model.current_leaves() is not None) == (leaves != 0)
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(again.decision_function(x_test), pipe.decision_function(x_test))


def test_core_does_not_import_sklearn_or_scipy():
    root = pathlib.Path(__file__).resolve().parents[1]
    code = ("import sys; import slidepy, slidepy.cli, slidepy.importer, slidepy.plot, slidepy.text, "
            "slidepy.labels, slidepy.trainer; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'torch', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # numba itself imports SciPy when it is installed, so check slidepy's own sources for SciPy
    for path in (root / "slidepy").glob("*.py"):
        if path.name == "sklearn.py":
            continue
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(scipy|sklearn)\b", text, re.M), path.name


def test_without_the_extra_the_import_names_it():
    code = ("import sys\nsys.modules['scipy'] = sys.modules['scipy.sparse'] = None\n"
            "try:\n    import slidepy.sklearn\nexcept ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "slidepy.sklearn needs scikit-learn and scipy" in out and "pip install -e '.[sklearn]'" in out


def test_run_dir_is_kept_for_plots(text_data, tmp_path):
    (x_train, y_train), _ = text_data
    X = TfidfVectorizer().fit_transform(x_train)
    est = _small(epochs=2, run_dir=str(tmp_path / "est"))
    est.fit(X, y_train).fit(X, y_train)  # a refit clears the directory first
    records = (tmp_path / "est" / "metrics.jsonl").read_text().splitlines()
    assert sum('"event": "start"' in r for r in records) == 1
    evals = [r for r in est.history_ if r["event"] == "eval"]
    assert len(evals) in (2, 3) and evals[-1]["complete"]  # 2 epoch ends, then the whole set if they were subsets
    assert len(list((tmp_path / "est" / "checkpoints").glob("step-*.npz"))) == 1  # the final weights, kept


def test_a_fit_without_run_dir_writes_no_checkpoint_it_would_throw_away(text_data, monkeypatch):
    """Without run_dir the run lives in a temporary directory deleted after fit: saving the final
    weights there (a model's whole size) would be time for nothing."""
    from slidepy.trainer import Trainer

    saved = []
    checkpoint = Trainer.checkpoint
    monkeypatch.setattr(Trainer, "checkpoint", lambda self: saved.append(self.step) or checkpoint(self))
    (x_train, y_train), (x_test, _) = text_data
    vectorizer = TfidfVectorizer().fit(x_train)
    est = _small(epochs=1).fit(vectorizer.transform(x_train), y_train)
    assert saved == [] and est.predict(vectorizer.transform(x_test)).shape[0] == len(x_test)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads to tell the settings apart")
def test_fit_and_predict_leave_the_callers_thread_settings_alone(text_data, monkeypatch):
    """A training run sets the process's thread counts; an estimator is a call inside someone
    else's program: fit and predict run on `threads` and then leave numba and BLAS as they were."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from slidepy.trainer import Trainer

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    inside = []
    for name in ("fit", "predict"):
        def spy(self, *a, _original=getattr(Trainer, name), _name=name, **k):
            inside.append((_name, numba.get_num_threads(), blas_threads()))
            return _original(self, *a, **k)
        monkeypatch.setattr(Trainer, name, spy)
    (x_train, y_train), (x_test, _) = text_data
    vec = TfidfVectorizer().fit(x_train)
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            clf = SlideClassifier(hidden=16, epochs=1, batch_size=64, threads=2, budget=4)
            clf.fit(vec.transform(x_train), y_train)
            after_fit = numba.get_num_threads(), blas_threads()
            clf.predict(vec.transform(x_test))
            after_predict = numba.get_num_threads(), blas_threads()
            pickle.loads(pickle.dumps(clf))  # as joblib.load of a fitted pipeline does
            after_unpickling = numba.get_num_threads(), blas_threads()
    finally:
        numba.set_num_threads(before)
    n_blas = len(blas_threads())
    assert [(name, n) for name, n, _ in inside] == [("fit", 2), ("predict", 2)]
    assert all(blas == [2] * n_blas for _, _, blas in inside)
    assert after_fit == after_predict == after_unpickling == (1, [1] * n_blas)


def test_lsh_inference_scores_a_sample_its_index_finds_nothing_for_exactly_and_keeps_decisions_finite():
    """Narrow SRP tables (budget 4, 2 tables of 6 bits) leave many samples with no candidate at
    all: predict read id -1 as the last class, and decision_function held -inf, NaN and +inf."""
    from sklearn.datasets import make_classification, make_multilabel_classification
    from sklearn.metrics import accuracy_score, roc_auc_score

    from slidepy.sklearn import to_dataset
    from slidepy.threads import threads_for_call

    lsh = dict(hidden=16, epochs=3, batch_size=32, lr=0.01, threads=1, budget=4, inference="lsh",
               lsh_family="srp", lsh_k=6, lsh_l=2)
    X, y = make_classification(n_samples=400, n_features=30, n_informative=20, n_classes=40, n_clusters_per_class=1,
                               random_state=0)
    clf = SlideClassifier(**lsh).fit(X, y)
    with threads_for_call(1):
        raw, _ = clf.trainer_.predict(to_dataset(X.astype(np.float32), 40), k=1)
    bare = np.flatnonzero(raw[:, 0] < 0)
    assert bare.size >= 20  # the case exists here (about 190 of the 400 samples when written)
    exact, _ = clf.trainer_.model.predict(to_dataset(X[bare].astype(np.float32), 40), k=1, use_lsh=False)
    predicted, decision = clf.predict(X), clf.decision_function(X)
    np.testing.assert_array_equal(predicted[bare], clf.classes_[exact[:, 0]])
    assert np.isfinite(decision).all()
    np.testing.assert_array_equal(predicted, clf.classes_[decision.argmax(axis=1)])
    assert clf.score(X, y) == accuracy_score(y, predicted)
    Xm, Ym = make_multilabel_classification(n_samples=300, n_features=30, n_classes=40, random_state=0)
    multi = SlideClassifier(**lsh, predict_k=3).fit(Xm, Ym)
    decision = multi.decision_function(Xm)
    assert np.isfinite(decision).all() and np.array_equal(multi.predict(Xm).astype(bool), decision > 0)
    binary = SlideClassifier(**{**lsh, "budget": 1, "lsh_l": 1}).fit(X, y % 2)
    decision = binary.decision_function(X)
    assert decision.shape == (400,) and np.isfinite(decision).all()
    roc_auc_score(y % 2, decision)  # a ranking metric takes it


def test_the_docstring_renders_in_a_notebook_without_a_warning():
    """Jupyter shows an estimator through _repr_html_, which parses the docstring as numpydoc: a
    section title over an underline of another length warned there."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "SlideClassifier" in SlideClassifier(threads=1)._repr_html_()
