"""A scikit-learn estimator over slidepy: `SlideClassifier`.

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from slidepy.sklearn import SlideClassifier, save_model

    pipe = make_pipeline(TfidfVectorizer(), SlideClassifier(hidden=256, epochs=4))
    pipe.fit(texts, label_lists)          # label lists, or a MultiLabelBinarizer indicator matrix
    pipe.score(test_texts, test_labels)   # P@1
    ids, scores = pipe[-1].predict_topk(pipe[:-1].transform(test_texts), 5)  # labels: pipe[-1].classes_[ids]
    save_model(pipe, "model.npz")         # then: slidepy predict --checkpoint model.npz --text "..."

Needs the `sklearn` extra (`pip install -e '.[sklearn]'`: scikit-learn and SciPy). Nothing in
slidepy's core imports this module.

Targets. `fit(X, Y)` takes X as a SciPy sparse matrix (any format; CSR is used as is) or a dense
array, and Y as
  * a label-indicator matrix (n_samples, n_labels), dense or sparse, as `MultiLabelBinarizer`
    gives: multi-label; `classes_` is `arange(n_labels)`;
  * a list of label lists (ids or names, e.g. `[["libc6", "python3"], ["perl"]]`): multi-label;
    `classes_` is the sorted set of labels seen. A list of equal-length 0/1 lists is read as an
    indicator matrix (as scikit-learn reads it); pass sets to mean label lists;
  * a 1-d array of class labels: multi-class (one label per sample), the usual classifier.
Both are converted in memory to slidepy's CSR `Dataset` (no files).

Prediction (a documented choice: top-k, not a threshold). The output layer is trained with a
softmax over the labels (default `loss="softmax"`), whose logits are comparable within a sample
but have no fixed zero, so `predict` returns the `predict_k` best labels of each sample:
  * multi-class: the best class, an array of `classes_` values;
  * multi-label: an indicator of the `predict_k` best labels, int64, dense when Y was a dense
    matrix, else a SciPy CSR matrix (a 22,875-label dense matrix would not fit in memory).
`decision_function` returns, for multi-label targets, each logit minus the midpoint between the
`predict_k`-th and the next best logit of its sample, so that `predict(X) == (decision > 0)` and
the order of the labels in a row is the order of the logits; for multi-class targets the raw
logits (n_samples, n_classes), and for two classes the logit difference (n_samples,).
`predict_topk(X, k)` gives ids (into `classes_`, -1 where fewer than k) and scores, best first.
Under LSH inference (`inference="lsh"`) a sample scores the labels its index picks (a sample it
finds none for is scored exactly); in `decision_function` the others score 1 below its lowest
picked one, finite and last.
`score(X, Y)` is P@1: the fraction of samples whose best label is one of theirs (for multi-class
targets, the accuracy).

Parameters map onto the config (see `config_dict`); anything else goes through `config`, a dict
of dotted keys (or nested dicts) such as `{"training.deterministic": True, "eval.subset": 500}`,
applied last. `clone`, `GridSearchCV` and `Pipeline` work as with any estimator.
"""

from __future__ import annotations

import numbers
import os
import shutil
import tempfile
import warnings
from typing import NamedTuple

import numpy as np

try:
    import scipy.sparse as sp
    from sklearn.base import BaseEstimator, ClassifierMixin
except ImportError as exc:  # an optional extra, as plot.py's matplotlib
    raise ImportError(f"slidepy.sklearn needs scikit-learn and scipy ({exc}): pip install -e '.[sklearn]'") from exc
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, check_random_state, column_or_1d

from .configfile import flat_keys, load_config
from .data import Dataset
from .errors import SlidepyError, TrainingInterrupted
from .labels import META_KEY as LABELS_META_KEY
from .text import META_KEY as TEXT_META_KEY
from .text import TextFeatures
from .threads import threads_for_call

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - scikit-learn 1.3 .. 1.5
    def _validate_data(estimator, X="no_validation", **kwargs):
        return estimator._validate_data(X, **kwargs)

__all__ = ["SlideClassifier", "save_model", "text_features_from_vectorizer"]

_MULTICLASS, _INDICATOR, _LABEL_LISTS = "multiclass", "indicator", "label-lists"


def _lsh_bits(family: str, bin_size: int = 8) -> int:
    return 1 if family == "srp" else max(1, (bin_size - 1).bit_length())


def _set_path(tree: dict, path: str, value) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        node = tree.get(key)
        if not isinstance(node, dict):
            node = tree[key] = {}
        tree = node
    tree[keys[-1]] = value


class SlideClassifier(ClassifierMixin, BaseEstimator):
    """A SLIDE network (sparse input -> ReLU hidden layers -> one output neuron per label) as a
    scikit-learn classifier for multi-label (and multi-class) data. See the module docstring for
    the target formats and the prediction rule.

    Parameters
    ----------
    (each with the config key it sets in brackets)

    hidden : int or tuple of int, default 128      [model.hidden]
    epochs : int, default 5                        [training.epochs]
    batch_size : int, default 128                  [training.batch_size]
    lr : float, default 1e-3                       [training.lr]
    optimizer : "adam" or "sgd"                    [training.optimizer]
    loss : "softmax" or "bce"                      [model.loss]
    selection : "lsh", "random" or "all"           [model.output.selection.mode]
        How the output layer picks its active neurons in training ("all": exact, dense).
    budget : int, default 1024                     [model.output.selection.budget]
        Most active output neurons per sample (a layer no larger than that is dense).
    inference : "exact" or "lsh"                   [model.output.selection.inference]
    lsh_family : "kmeans" (default), "srp", "dwta", "wta"   [...selection.lsh.family]
        kmeans is the cluster index that keeps retrieving the neurons that fire as training goes
        on (README, "How it works"); the hash families are kept for comparison.
    lsh_k, lsh_l : int, default 6, 16              [...selection.lsh.k / l]; range_pow follows k.
        Hash families only; kmeans sizes its clusters from the budget.
    dropout : float, default 0.0                   [model.dropout]
        Of the hidden outputs in training; 0.5 with wide hidden layers over several epochs.
    neighbours_weight : float, default 0.0         [model.neighbours.weight]
        Share of each prediction's score given to the label votes of its `neighbours_k` nearest
        training samples (slidepy/neighbours.py; 0.3 gained 0.5-1.0 P@1
        on the multi-label sets measured). Scores are then blended probabilities, not logits.
    reranker_weight : float or "auto", default 0.0 [model.reranker.weight]
        Share of each prediction's log-score given to per-label linear leaves over the input
        features, fitted when training ends, that re-rank its top 50 labels (slidepy/reranker.py).
        "auto" chooses it, whether they reach the top 100, 200 or 400 instead, and (where they
        carry the ranking, at a share of 0.5 or more) their SVM's C, 1, 4 or 16, on a slice of the
        training set held out of the network's training (2.5% of it, 512 to 2,048 samples; 0.2
        over the top 50 below 10,240 samples). Scores are then blended log-scores.
    neighbours_k : int, default 25                 [model.neighbours.k]
    neighbours_space : "hidden" (default), "input" or "auto"   [model.neighbours.space]
        Where the nearest samples are found: the last hidden space, the input rows (cosine), or
        whichever space's votes rank a true label first for more held-out training samples.
    predict_k : int, default 1
        How many labels `predict` marks per sample (multi-label targets).
    threads : int or None                          [training.threads] (None: every core)
    random_state : int, RandomState or None        [training.seed]
        Reproducible fits also need threads=1 (or config {"training.deterministic": True}): threads
        add their gradients lock-free, in an order that varies from run to run.
    run_dir : str or None
        Keep the run directory (metrics.jsonl for `slidepy plot`, the final checkpoint) there;
        each fit clears it first. None: a temporary directory, deleted after fit.
    verbose : bool
        Show the progress bar.
    config : dict or None
        More config settings, dotted keys or nested dicts, applied last.

    Attributes
    ----------
    classes_ : ndarray of the labels; column j of `predict`/`decision_function` is `classes_[j]`
    n_features_in_ : int
    trainer_ : slidepy.Trainer holding the trained network (save it with `save`)
    history_ : list of the metrics.jsonl records of the fit
    """

    def __init__(self, hidden=128, epochs=5, batch_size=128, lr=1e-3, optimizer="adam", loss="softmax",
                 selection="lsh", budget=1024, inference="exact", lsh_family="kmeans", lsh_k=6, lsh_l=16,
                 predict_k=1, threads=None, random_state=0, run_dir=None, verbose=False, config=None,
                 dropout=0.0, neighbours_weight=0.0, neighbours_k=25, neighbours_space="hidden",
                 reranker_weight=0.0):
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.loss = loss
        self.selection = selection
        self.budget = budget
        self.inference = inference
        self.lsh_family = lsh_family
        self.lsh_k = lsh_k
        self.lsh_l = lsh_l
        self.dropout = dropout
        self.neighbours_weight = neighbours_weight
        self.neighbours_k = neighbours_k
        self.neighbours_space = neighbours_space
        self.reranker_weight = reranker_weight
        self.predict_k = predict_k
        self.threads = threads
        self.random_state = random_state
        self.run_dir = run_dir
        self.verbose = verbose
        self.config = config

    # -- config ----------------------------------------------------------------------------------

    def config_dict(self, seed: int = 0, run_dir: str | None = None) -> dict:
        """The slidepy config (a nested dict) these parameters stand for."""
        hidden = [int(self.hidden)] if isinstance(self.hidden, numbers.Integral) else [int(h) for h in self.hidden]
        lsh = {"family": self.lsh_family}
        if self.lsh_family != "kmeans":
            lsh.update(k=self.lsh_k, l=self.lsh_l)
        if self.lsh_family != "kmeans" and isinstance(self.lsh_k, numbers.Integral):
            lsh["range_pow"] = int(min(24, self.lsh_k * _lsh_bits(self.lsh_family)))
        tree = {
            "model": {"hidden": hidden, "loss": self.loss, "dropout": self.dropout,
                      "neighbours": {"k": self.neighbours_k, "weight": self.neighbours_weight,
                                     "space": self.neighbours_space},
                      "reranker": {"weight": self.reranker_weight},
                      "output": {"selection": {"mode": self.selection, "budget": self.budget,
                                               "inference": self.inference, "lsh": lsh}}},
            "training": {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                         "optimizer": self.optimizer, "seed": seed, "threads": self.threads},
            "eval": {"subset": 1000},
            "output": {"run_dir": run_dir or "runs/sklearn", "checkpoint_every": 0, "keep_last": 1},
        }
        for path, value in flat_keys(self.config or {}).items():
            _set_path(tree, path, value)
        return tree

    def _seed(self) -> int:
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    # -- fit / predict ---------------------------------------------------------------------------

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and y (see the module docstring). Returns self."""
        if self.lsh_family == "kmeans" and (self.lsh_k, self.lsh_l) != (6, 16):
            warnings.warn(f"lsh_k={self.lsh_k!r}, lsh_l={self.lsh_l!r} apply to the hash families (lsh_family "
                          "'srp', 'wta', 'dwta'); the k-means index (lsh_family 'kmeans') does not use them",
                          UserWarning, stacklevel=2)
        k = self.predict_k  # prediction's own parameter: checked now, not after the training
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"predict_k: expected an int >= 1, got {k!r}")
        X_checked = _validate_data(self, X, reset=True, accept_sparse="csr", dtype=np.float32)
        targets = encode_targets(y, X_checked.shape[0], type(self).__name__)
        self._target, self._sparse_output, self.classes_ = targets.kind, targets.sparse_output, targets.classes
        train = to_dataset(X_checked, len(self.classes_), y_indptr=targets.y_indptr, y_indices=targets.y_indices)
        with threads_for_call():  # the trainer sets them from `threads`, for this call only
            trainer = fit_trainer(lambda run_dir: self.config_dict(seed=self._seed(), run_dir=run_dir), train,
                                  self.run_dir, bool(self.verbose))
        self.trainer_ = trainer
        self.history_ = list(trainer.history)
        return self

    def _predict_ids(self, X, k: int):
        check_is_fitted(self, "trainer_")
        data = to_dataset(_validate_data(self, X, reset=False, accept_sparse="csr", dtype=np.float32),
                          len(self.classes_))
        with threads_for_call(self.threads):
            ids, scores = self.trainer_.predict(data, k=k)
            # Under LSH inference a sample whose buckets are all empty has no candidate at all: it
            # is scored exactly instead (else predict would read id -1 as the last class).
            bare = np.flatnonzero(ids[:, 0] < 0)
            if bare.size:
                ids[bare], scores[bare] = self.trainer_.model.predict(data, k=k, rows=bare, use_lsh=False)
        return ids, scores

    def predict_topk(self, X, k: int = 5):
        """The k best labels of each sample: ids (n_samples, k) int32 into `classes_` (-1 where a
        sample has fewer candidates, as under LSH inference) and their scores (logits, or blended
        probabilities with neighbours_weight > 0) float32, best first."""
        if not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        return self._predict_ids(X, int(k))

    def _scores(self, X) -> np.ndarray:
        """Logits (n_samples, n_labels) float32. The labels LSH inference did not select score 1
        below their sample's lowest selected one: ranked last, and finite, so that differences and
        the ranking metrics (roc_auc) stay defined."""
        n_labels = len(self.classes_)
        ids, scores = self._predict_ids(X, n_labels)
        picked = ids >= 0
        floor = np.where(picked, scores, np.inf).min(axis=1) - 1.0  # every row has one (_predict_ids)
        out = np.repeat(floor[:, None].astype(np.float32), n_labels, axis=1)
        rows, cols = np.nonzero(picked)
        out[rows, ids[rows, cols]] = scores[rows, cols]
        return out

    def decision_function(self, X) -> np.ndarray:
        """Scores of every label (see the module docstring: shifted so that > 0 means predicted
        for multi-label targets, raw logits for multi-class). Dense: n_samples * n_labels floats."""
        check_is_fitted(self, "trainer_")
        logits = self._scores(X)
        if self._target == _MULTICLASS:
            if logits.shape[1] == 2:
                return (logits[:, 1] - logits[:, 0]).astype(np.float64)
            return logits.astype(np.float64)
        return shift_to_top_k(logits, min(int(self.predict_k), logits.shape[1]))

    def predict(self, X):
        """The best class (multi-class targets) or an indicator of the `predict_k` best labels
        (multi-label targets; dense int64 if fit got a dense matrix, else SciPy CSR)."""
        check_is_fitted(self, "trainer_")
        if self._target == _MULTICLASS:
            ids, _ = self._predict_ids(X, 1)
            return self.classes_[ids[:, 0]]
        k = min(int(self.predict_k), len(self.classes_))
        ids, _ = self._predict_ids(X, k)
        out = indicator_matrix(ids, len(self.classes_))
        return out if self._sparse_output else out.toarray()

    def score(self, X, y, sample_weight=None) -> float:
        """P@1: the fraction of samples whose best label is one of their labels (for multi-class
        targets, the accuracy). With `sample_weight`, a weighted mean."""
        ids, _ = self._predict_ids(X, 1)
        truth = label_sets(y, self.classes_)
        if len(truth) != ids.shape[0]:
            raise ValueError(f"y has {len(truth)} samples but X has {ids.shape[0]}")
        hits = np.array([int(ids[i, 0]) in truth[i] for i in range(ids.shape[0])], np.float64)
        return float(np.average(hits, weights=sample_weight)) if hits.size else 0.0

    # -- persistence -----------------------------------------------------------------------------

    def save(self, path, vectorizer=None) -> str:
        """Write the trained network as a slidepy model file (for `slidepy evaluate/predict`), with
        the label names (`classes_`) and, if given, the fitted text vectorizer that feeds it (then
        `slidepy predict --text` works)."""
        check_is_fitted(self, "trainer_")
        path = os.fspath(path)
        self.trainer_.save(path, extra=model_file_meta(self.classes_, self.n_features_in_, vectorizer))
        return path

    def __getstate__(self):
        state = self.__dict__.copy()
        trainer = state.pop("trainer_", None)
        if trainer is not None:  # the model file, not the trainer's working state (scratch, data, indexes)
            state["_trainer_bytes"] = trainer_to_bytes(trainer)
            # the neighbour bank, which model files leave out (it is rebuilt from the training set,
            # which a fitted estimator does not keep): without it the copy would score differently
            state["_neighbour_bank"] = trainer.engine.neighbours
        return state

    def __setstate__(self, state):
        blob = state.pop("_trainer_bytes", None)
        bank = state.pop("_neighbour_bank", None)
        self.__dict__.update(state)
        if blob is not None:
            self.trainer_ = trainer_from_bytes(blob)
            self.trainer_.engine.neighbours = bank

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multilabel": True, "multioutput": True}


# -- the estimator's plumbing: targets, data, predictions, model files -------------------------


class Targets(NamedTuple):
    """A fit's y, encoded: its kind (_MULTICLASS, _INDICATOR or _LABEL_LISTS), whether `predict`
    returns a sparse matrix, the labels (`classes_`), and the label rows as CSR arrays."""

    kind: str
    sparse_output: bool
    classes: np.ndarray
    y_indptr: np.ndarray
    y_indices: np.ndarray


def _label_list_rows(Y):
    """Y as a list where it is a 1-d object array or pandas Series of label lists (a DataFrame
    column of tags: scikit-learn's type_of_target calls it a legacy format and stops); else Y."""
    if (not isinstance(Y, (list, tuple)) and getattr(Y, "ndim", None) == 1 and getattr(Y, "dtype", None) == object
            and len(Y) and all(isinstance(row, (list, tuple, set, frozenset, np.ndarray)) for row in Y)):
        return list(Y)
    return Y


def target_kind(Y) -> str:
    """Which of the accepted target formats Y is (see the module docstring)."""
    if sp.issparse(Y):
        return _INDICATOR
    Y = _label_list_rows(Y)
    try:
        kind = type_of_target(Y)
    except ValueError:  # ragged sequences of sequences
        kind = None
    if kind == "multilabel-indicator":
        return _INDICATOR
    if isinstance(Y, (list, tuple)) and len(Y) and all(
            isinstance(row, (list, tuple, set, frozenset, np.ndarray)) for row in Y):
        return _LABEL_LISTS
    return _MULTICLASS


def encode_targets(Y, n_samples: int, owner: str = "SlideClassifier") -> Targets:
    """Y (any accepted format) as `Targets`, checked against the n_samples of X; `owner` names the
    estimator in the errors."""
    if Y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None")
    Y = _label_list_rows(Y)
    kind = target_kind(Y)
    if kind == _INDICATOR:
        Ym = sp.csr_matrix(Y) if not sp.issparse(Y) else Y.tocsr()
        sparse_output = sp.issparse(Y)
        if Ym.shape[0] != n_samples:
            raise ValueError(f"Y has {Ym.shape[0]} rows but X has {n_samples} samples")
        Ym = Ym.copy()
        Ym.sum_duplicates()
        Ym.eliminate_zeros()
        if Ym.data.size and not np.all(Ym.data == 1):
            raise ValueError("a label-indicator Y must hold only 0 and 1")
        classes = np.arange(Ym.shape[1])
        y_indptr, y_indices = Ym.indptr.astype(np.int64), Ym.indices.astype(np.int32)
    elif kind == _LABEL_LISTS:
        sparse_output = True
        if len(Y) != n_samples:
            raise ValueError(f"Y has {len(Y)} label lists but X has {n_samples} samples")
        seen = {label for row in Y for label in row}
        try:
            classes = np.array(sorted(seen))
        except TypeError:
            raise ValueError("the labels in Y cannot be sorted (mixed types?)") from None
        index = {label: i for i, label in enumerate(classes.tolist())}
        lengths = [len(set(row)) for row in Y]
        y_indptr = np.zeros(n_samples + 1, np.int64)
        np.cumsum(lengths, out=y_indptr[1:])
        y_indices = np.fromiter((index[label] for row in Y for label in sorted(set(row), key=index.get)),
                                np.int32, count=int(y_indptr[-1]))
    else:
        y = column_or_1d(Y, warn=True)
        check_classification_targets(y)
        if y.shape[0] != n_samples:
            raise ValueError(f"y has {y.shape[0]} entries but X has {n_samples} samples")
        sparse_output = False
        classes, encoded = np.unique(y, return_inverse=True)
        y_indptr = np.arange(n_samples + 1, dtype=np.int64)
        y_indices = encoded.astype(np.int32)
    if classes.shape[0] < 2:
        raise ValueError(f"{owner} needs at least 2 classes (labels) in the data; "
                         f"got {classes.shape[0]} class")
    return Targets(kind, sparse_output, classes, y_indptr, y_indices)


def label_sets(Y, classes: np.ndarray) -> list:
    """Y (any accepted format) as one set of indices into `classes` per sample, for `score`."""
    Y = _label_list_rows(Y)
    kind = target_kind(Y)
    if kind == _INDICATOR:
        Ym = sp.csr_matrix(Y)
        if Ym.shape[1] != classes.shape[0]:  # its columns are the classes: another count is other labels
            raise ValueError(f"y has {Ym.shape[1]} label columns but the model was fitted with {classes.shape[0]}")
        Ym.eliminate_zeros()
        return [set(Ym.indices[Ym.indptr[i]:Ym.indptr[i + 1]].tolist()) for i in range(Ym.shape[0])]
    index = {label: i for i, label in enumerate(classes.tolist())}
    if kind == _LABEL_LISTS:
        return [{index[label] for label in row if label in index} for row in Y]
    y = column_or_1d(Y)
    return [{index[label]} if label in index else set() for label in y.tolist()]


def to_dataset(X, n_labels: int, y_indptr=None, y_indices=None) -> Dataset:
    """A validated X (and encoded labels) as slidepy's CSR Dataset, in memory."""
    if sp.issparse(X):
        X = X.tocsr()
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        indptr, indices, values = X.indptr, X.indices, X.data
    else:
        rows, cols = np.nonzero(X)
        indptr = np.zeros(X.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=indptr[1:])
        indices, values = cols, X[rows, cols]
    n = X.shape[0]
    if y_indptr is None:
        y_indptr, y_indices = np.zeros(n + 1, np.int64), np.zeros(0, np.int32)
    return Dataset(x_indptr=indptr, x_indices=indices, x_values=values, y_indptr=y_indptr,
                   y_indices=y_indices, n_features=X.shape[1], n_labels=n_labels, source="<scikit-learn X>")


def fit_trainer(config_for, train: Dataset, run_dir, progress: bool):
    """A Trainer fitted to `train` with the config tree `config_for(run_dir)`, in `run_dir`
    (an earlier run there cleared first) or, when it is None, in a temporary directory deleted
    afterwards. slidepy's own errors come out as ValueError, as scikit-learn expects."""
    from .trainer import Trainer

    temp_dir = None
    if run_dir is None:
        temp_dir = tempfile.mkdtemp(prefix="slidepy-sklearn-")
        run_dir = temp_dir
    else:
        run_dir = os.fspath(run_dir)
    try:
        try:
            cfg = load_config(config_for(run_dir))
            trainer = Trainer(cfg, train=train, run_dir=run_dir, progress=progress, save_final=temp_dir is None)
            if temp_dir is None:
                trainer.clear_run_dir()
            trainer.fit()
        except TrainingInterrupted:  # Ctrl-C: for the caller to stop on (a search would go on past a
            raise KeyboardInterrupt from None  # ValueError), naming no checkpoint of a deleted directory
        except SlidepyError as exc:
            raise ValueError(str(exc)) from exc
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return trainer


def shift_to_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Logits (n_samples, n_labels) minus, per sample, the midpoint between its k-th and next
    best logit (float64), so that exactly the top k are > 0 (all of them when k is every label)."""
    if k >= logits.shape[1]:
        threshold = np.min(logits, axis=1) - 1.0
    else:
        part = -np.partition(-logits, (k - 1, k), axis=1)
        threshold = 0.5 * (part[:, k - 1].astype(np.float64) + part[:, k])
    return logits.astype(np.float64) - threshold[:, None]


def indicator_matrix(ids: np.ndarray, n_classes: int) -> sp.csr_matrix:
    """Top-k ids (n_samples, k), -1 for none, as an int64 CSR indicator (n_samples, n_classes)."""
    n = ids.shape[0]
    keep = ids >= 0
    rows = np.repeat(np.arange(n), keep.sum(axis=1))
    out = sp.csr_matrix((np.ones(rows.size, np.int64), (rows, ids[keep])), shape=(n, n_classes))
    out.sort_indices()
    return out


def model_file_meta(classes: np.ndarray, n_features: int, vectorizer=None) -> dict:
    """What a model file holds besides the trainer's own meta: the label names (unless they are
    0..n-1) and the text vectorizer's settings, checked to give `n_features` features."""
    extra = {}
    if not np.array_equal(classes, np.arange(len(classes))):
        extra[LABELS_META_KEY] = [str(c) for c in classes.tolist()]
    if vectorizer is not None:
        features = text_features_from_vectorizer(vectorizer)
        if features.n_features != n_features:
            raise ValueError(f"the vectorizer gives {features.n_features} features but the model takes "
                             f"{n_features}")
        extra[TEXT_META_KEY] = features.to_meta()
    return extra


def trainer_to_bytes(trainer) -> bytes:
    """A trainer as the bytes of its model file: what a pickle needs, not its working state."""
    with tempfile.TemporaryDirectory(prefix="slidepy-pickle-") as tmp:
        path = os.path.join(tmp, "model.npz")
        trainer.save(path)
        with open(path, "rb") as f:
            return f.read()


def trainer_from_bytes(blob: bytes):
    """The Trainer of a model file's bytes (trainer_to_bytes' inverse)."""
    from .trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="slidepy-pickle-") as tmp:
        path = os.path.join(tmp, "model.npz")
        with open(path, "wb") as f:
            f.write(blob)
        with threads_for_call():  # unpickling (joblib.load, deepcopy) is no training run either
            return Trainer.load(path)


def text_features_from_vectorizer(vectorizer) -> TextFeatures:
    """A fitted `TfidfVectorizer` or `CountVectorizer` as slidepy's `TextFeatures` (what
    `slidepy predict --text` runs). Refuses settings it cannot reproduce, saying which."""
    from sklearn.feature_extraction.text import CountVectorizer

    if not isinstance(vectorizer, CountVectorizer):
        raise ValueError(f"only a fitted TfidfVectorizer or CountVectorizer can be stored, not "
                         f"{type(vectorizer).__name__}")
    check_is_fitted(vectorizer, "vocabulary_")
    v = vectorizer
    problems = []
    if v.analyzer != "word":
        problems.append(f"analyzer={v.analyzer!r} (only 'word')")
    if v.tokenizer is not None:
        problems.append("a custom tokenizer")
    if v.preprocessor is not None:
        problems.append("a custom preprocessor")
    if callable(v.strip_accents):
        problems.append("a callable strip_accents")
    if v.input != "content":
        problems.append(f"input={v.input!r} (only 'content')")
    if problems:
        raise ValueError("slidepy cannot reproduce this vectorizer outside scikit-learn: " + ", ".join(problems))
    vocabulary = [None] * len(v.vocabulary_)
    for term, j in v.vocabulary_.items():
        vocabulary[j] = term
    stop = v.get_stop_words()
    idf = None
    norm, sublinear = None, False
    if hasattr(v, "idf_") or hasattr(v, "norm"):  # TfidfVectorizer
        norm = v.norm
        sublinear = bool(v.sublinear_tf)
        if v.use_idf:
            idf = np.asarray(v.idf_, np.float64)
    return TextFeatures(vocabulary=vocabulary, idf=idf, lowercase=bool(v.lowercase), strip_accents=v.strip_accents,
                        token_pattern=v.token_pattern, stop_words=None if stop is None else sorted(stop),
                        ngram_range=tuple(v.ngram_range), binary=bool(v.binary), sublinear_tf=sublinear, norm=norm)


def save_model(model, path) -> str:
    """Save a fitted `SlideClassifier`, or a fitted `Pipeline` of one text vectorizer and a
    `SlideClassifier`, as a slidepy model file that `slidepy evaluate/predict` read (with
    `--text` for a pipeline)."""
    from sklearn.pipeline import Pipeline

    if isinstance(model, SlideClassifier):
        return model.save(path)
    if isinstance(model, Pipeline):
        steps = [step for _, step in model.steps if step not in (None, "passthrough")]
        if not steps or not isinstance(steps[-1], SlideClassifier):
            raise ValueError("the pipeline's last step must be a SlideClassifier")
        if len(steps) == 1:
            return steps[-1].save(path)
        if len(steps) == 2:
            try:
                return steps[-1].save(path, vectorizer=steps[0])
            except ValueError as exc:
                if "can be stored" not in str(exc):
                    raise
                raise ValueError(f"{exc}: slidepy predict --text reads raw text through a word vectorizer alone; save "
                                 "pipeline[-1] (the SlideClassifier) and feed it the transformed features") from None
        names = ", ".join(type(s).__name__ for s in steps[:-1])
        raise ValueError(f"only a pipeline of one text vectorizer and a SlideClassifier can be saved with its "
                         f"vectorizer; this one has {names} before it (save pipeline[-1] alone)")
    raise ValueError(f"save_model takes a SlideClassifier or a Pipeline ending in one, not {type(model).__name__}")
