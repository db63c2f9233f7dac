"""A model: a config and the engine built from it. Save, load and predict, with no dataset.

    model = Model.load("model.npz")                 # any checkpoint or saved model file
    ids, scores = model.predict(dataset, k=5)       # (B, k) int32 label ids, (B, k) float32
    model.save("copy.npz")

A model file is a checkpoint (checkpoint.py's format): the engine's arrays (weights, optimizer
moments, LSH tables and hash functions) plus meta {"config", "step", "engine", "n_features",
"n_labels"}, and whatever training progress the trainer adds (epoch, position, seconds).
Every problem with a file is a CheckpointError naming it.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .checkpoint import load_checkpoint, save_checkpoint
from .config import AUTO, Config, Lsh, config_to_dict, layer_selections
from .configfile import config_from_dict, validate_config
from .data import Dataset
from .engine import Engine, LayerSelection
from .errors import CheckpointError, ConfigError, DataError
from .lsh import LshOptions
from .metrics import evaluate_topk
from .neighbours import build_bank
from .reranker import (COST, COSTS, DEPTHS, RANDOM_STREAM, RANKING_SHARE, SHORTLIST_STREAM, WEIGHT, Leaves,
                       choose_blend, confusion_depth, fit_leaves, random_negatives, random_negatives_per_label,
                       rerank_top, score_leaves, shortlist_plan, training_pairs, training_rows)
from .rng import generator

# rng.generator key of the fixed evaluation subset (the epoch order uses the epoch number).
EVAL_SUBSET_STREAM = 12345
# Mean L2 norms of training rows that model.input_scale "auto" leaves as they are (input_scale_for)
INPUT_NORM_BAND = (1.0, 8.0)
COMPILE_SAMPLES = 64  # compile_reranker's training samples: enough for every path's arrays to be non-empty


def lsh_options(lsh: Lsh) -> LshOptions:
    """A config's lsh section as the plain fields an LshIndex takes (its rebuild section flattened
    in): lsh.py never reads the config."""
    return LshOptions(**lsh.model_dump(exclude={"rebuild"}), **lsh.rebuild.model_dump())


def with_input_scale(config: Config, scale: float) -> Config:
    """`config` with model.input_scale set to `scale` (the trainer resolves "auto" with it)."""
    model = config.model.model_copy(update={"input_scale": float(scale)})
    return validate_config(config.model_copy(update={"model": model}))


def input_scale_for(train: Dataset, band: tuple[float, float] = INPUT_NORM_BAND) -> float:
    """model.input_scale "auto" for `train`: 1 where the mean L2 norm of its rows lies within
    `band`, else the factor (three significant digits) that takes it to the band's nearer edge; 1
    where no row has features. (The automatic recipe narrows the band for single-pass runs.)

    Why a band: glorot layers stepped by Adam at the recipe's rates trained well on rows of mean
    norm 1 (L2-normalised tf-idf: DebianDeps, DebianNextWord) to 8 (~64 binary features: Bibtex),
    and badly on rows scaled 20x up or down: the recipe's P@1 on Bibtex fell from 0.655 to 0.580
    and 0.616, on Delicious from 0.687 to 0.675 and 0.666 (0.655, 0.644, 0.683 and 0.693 with
    the factor); MNIST in raw pixel units (0-255) 0.9691 against 0.9845 with the factor. Within
    the band a factor trades learning speed against over-fitting, with no setting best
    everywhere: at unit norm Bibtex's 5-epoch config lost 2 points (0.618-0.624 against 0.644)
    and its 20-epoch recipe none (0.643-0.649 against 0.647-0.653); DebianDeps' 15 epochs at
    norm 2 and 4 traded P@1 (-0.9, -2.2 points) for P@5 (+0.3, +0.2), at norm 0.5 P@5 (-0.9) for
    nothing. One factor for all rows keeps their relative norms (normalising each
    row cost Bibtex and Delicious up to 1.3 points)."""
    norm = train.mean_row_norm
    lo, hi = band
    return float(f"{min(hi, max(lo, norm)) / norm:.3g}") if norm > 0 else 1.0


def max_labels(*sets: Dataset | None) -> int:
    """Most labels of one sample over the given sets (at least 1)."""
    return max([1] + [int(np.max(np.diff(ds.y_indptr), initial=1)) for ds in sets if ds is not None])


def same_samples(data: Dataset, train: Dataset) -> bool:
    """Whether `data` holds `train`'s samples: it is that set, comes from the same file (loaded
    again, or a subset of it), or holds the same arrays (a copy of the file under another name).
    Scored against a neighbour bank built from `train`, each such sample would find itself at
    cosine 1 and vote its own labels."""
    if data is train:
        return True
    files = [d.source for d in (data, train) if os.path.isfile(d.source)]
    if len(files) == 2 and os.path.samefile(files[0], files[1]):
        return True
    # A copy: one pass over arrays the scoring reads many times over anyway.
    return (data.n_samples == train.n_samples and data.x_indices.size == train.x_indices.size
            and all(np.array_equal(getattr(data, name), getattr(train, name))
                    for name in ("x_indptr", "y_indptr", "x_indices", "y_indices", "x_values")))


def with_data_paths_from(config: Config, working_dir) -> Config:
    """`config` with each relative data path (train, test, labels, cache_dir) that exists from
    `working_dir` (the directory the model was trained and saved in) made absolute there, and the
    cache directory there in any case; the others as they are (read from the current directory).

    Why: a model file keeps its config's paths as written, relative to where the run started, and
    they mean that directory's files: `slidepy predict` run from elsewhere would otherwise lose the
    neighbours' votes (built from the training data) and the label names, or read another
    directory's files of the same names."""
    if not isinstance(working_dir, str) or not os.path.isdir(working_dir):
        return config
    data, moved = config.data, {}
    for key in ("train", "test", "labels", "cache_dir"):
        path = getattr(data, key)
        if not path or os.path.isabs(path):
            continue
        there = os.path.join(working_dir, path)  # not normalised: "link/.." must follow the link
        if os.path.exists(there) or key == "cache_dir":  # the run's cache, made anew there if gone
            moved[key] = there
    if not moved:
        return config
    return config.model_copy(update={"data": data.model_copy(update=moved)})


class Model:
    """`config` (a Config) and `engine` (the Engine it describes, of fixed dimensions)."""

    def __init__(self, config: Config, engine: Engine):
        self.config = config
        self.engine = engine
        self.bank_source: Dataset | None = None  # the training set the neighbour bank holds
        # (training set, key, InputPostings, input-space leave-one-out P@1 or None) of the last
        # input-space bank
        self._input_space: tuple | None = None
        self.working_dir: str | None = None  # where a loaded model was saved (with_data_paths_from)
        self.train_format: str | None = None  # "xc" / "libsvm": its training file's (data.file_format)
        # whether the config names the data it trained on (files or its synthetic spec), not sets
        # handed in from Python; None: not recorded (files written before it was)
        self.data_named: bool | None = None
        self.leaves: Leaves | None = None  # model.reranker's, fitted when training ends (fit_reranker)
        self.share_scores: dict | None = None  # {(cost, share, depth): held-out mean P@k} of the last "auto" choice

    @classmethod
    def build(cls, config: Config, n_features: int, n_labels: int, max_labels: int = 1,
              label_rate: float = 0.0, index_first_iters: int | None = None) -> "Model":
        """A freshly initialised model for data of these dimensions; `max_labels` (most labels of
        one sample) sizes the output layer's active sets, which grow on demand; `label_rate`
        (mean labels per sample / n_labels) sets bce's initial output biases (Engine.label_rate).
        model.input_scale "auto" counts as 1 here (the trainer resolves it from the data first):
        a model built without its data is a loaded file, whose config holds the number (files
        written before the key existed trained at 1). `index_first_iters`: Engine's."""
        t = config.training
        input_scale = 1.0 if config.model.input_scale == AUTO else config.model.input_scale
        selections = [LayerSelection(mode=s.mode, budget=s.budget, min_active=s.min_active, inference=s.inference,
                                     lsh=lsh_options(s.lsh), correction=s.correction,
                                     negatives=s.negatives) for s in layer_selections(config)]
        engine = Engine(n_features=n_features, hidden=[h.size for h in config.model.hidden], n_labels=n_labels,
                        selections=selections, loss=config.model.loss, optimizer=t.optimizer, lr=t.lr, beta1=t.beta1,
                        beta2=t.beta2, eps=t.eps, init=config.model.init, seed=t.seed, max_labels=max(1, max_labels),
                        label_rate=label_rate, dropout=config.model.dropout, weight_decay=t.weight_decay,
                        input_scale=input_scale, index_first_iters=index_first_iters)
        return cls(config, engine)

    # -- files ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, path) -> tuple["Model", dict]:
        """(model, meta) from a model or checkpoint file; meta also holds the training progress a
        trainer saved. Raises CheckpointError for a file that is not a slidepy model, or whose
        config, dimensions or arrays do not hold together."""
        arrays, meta = load_checkpoint(path)
        if "config" not in meta:
            raise CheckpointError(f"{path} holds no config: not a slidepy model file")
        try:
            config = config_from_dict(meta["config"])
        except ConfigError as exc:
            raise CheckpointError(f"{path} holds an invalid config: {exc}") from None
        try:
            n_features, n_labels = int(meta["n_features"]), int(meta["n_labels"])
            if n_features < 1 or n_labels < 1:
                raise ValueError(f"n_features {n_features}, n_labels {n_labels}")
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path} has no valid model dimensions ({type(exc).__name__}: {exc})") from None
        model = cls.build(with_data_paths_from(config, meta.get("working_dir")), n_features, n_labels)
        model.restore(path, arrays, meta)
        model.working_dir, model.train_format = meta.get("working_dir"), meta.get("train_format")
        model.data_named = meta.get("data_named")
        return model, meta

    def restore(self, path, arrays: dict, meta: dict) -> None:
        """Copy a loaded checkpoint's engine state in place; any disagreement with this model is a
        CheckpointError naming the file."""
        try:
            engine_meta = meta.get("engine", {})
            if not isinstance(engine_meta, dict):
                raise ValueError("malformed engine state")
            leaves = {name: arrays.pop(name) for name in list(arrays) if name.startswith(LEAVES_PREFIX)}
            self.engine.load_state(arrays, engine_meta, source=str(path))
            self.leaves = _leaves_from(leaves, meta.get("reranker"), self.config.model.reranker,
                                       self.engine.n_features, self.engine.n_labels)
        except CheckpointError as exc:
            raise CheckpointError(f"checkpoint {path} does not match the config: {exc}") from None
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {type(exc).__name__}: {exc}") from None

    def state(self, **progress) -> tuple[dict, dict]:
        """(arrays, meta) of a model file; `progress` (epoch, seconds, ...) joins the meta."""
        # working_dir: where the config's relative data paths were read from (with_data_paths_from)
        meta = {"config": config_to_dict(self.config), "working_dir": os.getcwd(), "step": self.engine.step, **progress,
                "engine": self.engine.state_meta(), "n_features": self.engine.n_features,
                "n_labels": self.engine.n_labels}
        if self.train_format is not None:  # how a headerless file's ids compare (data.index_base_note)
            meta["train_format"] = self.train_format
        if self.data_named is not None:  # whether the CLI may rebuild the votes' bank from the config's data
            meta["data_named"] = self.data_named
        arrays = self.engine.state_arrays()
        leaves = self.current_leaves()  # fitted on these weights: a model file predicts as its run did
        if leaves is not None:
            meta["reranker"] = {"step": leaves.step, "n_features": leaves.n_features, "share": leaves.share,
                                "depth": leaves.depth, "cost": leaves.cost}
            arrays |= {LEAVES_PREFIX + name: getattr(leaves, name) for name in LEAVES_ARRAYS}
        return arrays, meta

    def save(self, path, **progress) -> str:
        """Write a self-contained model file (weights, optimizer, tables, config) atomically."""
        save_checkpoint(path, *self.state(**progress))
        return str(path)

    # -- inference ------------------------------------------------------------------------------

    def nonfinite(self) -> str | None:
        """'NaN/inf in layer 1 weights, layer 1 bias' naming every layer array that holds one, else
        None. (After a bad step the backward pass has usually spread NaN to the layers below.)"""
        bad = [f"layer {l} {name}" for l, layer in enumerate(self.engine.layers) for name in ("weights", "bias")
               if not np.isfinite(getattr(layer, name)).all()]
        return f"NaN/inf in {', '.join(bad)}" if bad else None

    def accept_training_data(self, train: Dataset | None, test: Dataset | None, source="the model") -> None:
        """Check that `train` has this model's dimensions (DataError naming both), and make room in
        the output layer's active sets for the most labels of one sample of `train` or `test`."""
        dims = (self.engine.n_features, self.engine.n_labels)
        if train is not None and (train.n_features, train.n_labels) != dims:
            raise DataError(f"{train.source} has {train.n_features} features / {train.n_labels} labels but the "
                            f"model in {source} was trained on {dims[0]} / {dims[1]}")
        self.engine.ensure_label_capacity(max_labels(train, test))

    def check_input_dims(self, data: Dataset) -> None:
        """Feature ids beyond the model's input layer would index past its weights."""
        if data.n_features > self.engine.n_features:
            raise DataError(f"{data.source} has {data.n_features} features but the model takes "
                            f"{self.engine.n_features}")

    def attach_neighbours(self, train: Dataset | None) -> bool:
        """Build the neighbour bank of model.neighbours from `train` under the current weights, so
        that exact scoring blends in the label votes of each sample's nearest training samples
        (slidepy/neighbours.py); True if one is attached. Nothing happens when model.neighbours
        is off or there is no training data. Call it again after the weights change (the trainer
        builds one at each evaluation and drops it before training on: `detach_neighbours`)."""
        opts = self.config.model.neighbours
        self.detach_neighbours()
        if opts.weight <= 0 or train is None or train.n_samples == 0:
            return False
        self.check_input_dims(train)
        if train.n_labels > self.engine.n_labels:  # its votes would index past the output layer
            raise DataError(f"{train.source} has {train.n_labels} labels but the model scores "
                            f"{self.engine.n_labels}: not the training set of its neighbours' votes")
        # The input space's rows and leave-one-out P@1 do not move with the weights: an evaluation
        # takes them from the last bank of the same samples, k and temperature (that P@1 took 6 s
        # at 10^5 samples of 50 non-zeros and 10^5 labels, one thread, at every evaluation before).
        seed = self.config.training.seed
        key = (opts.bank_samples, seed, opts.k, opts.temperature)
        kept = self._input_space
        if kept is not None and (kept[0] is not train or kept[1] != key):
            kept = None
        bank = build_bank(self.engine, train, opts.k, opts.weight, opts.temperature, samples=opts.bank_samples,
                          seed=seed, space=opts.space, postings=kept and kept[2], input_p1=kept and kept[3])
        if bank.postings is not None:
            self._input_space = (train, key, bank.postings, (bank.loo_precision or {}).get("input"))
        self.engine.neighbours = bank
        self.bank_source = train
        return True

    def holds_in_bank(self, data: Dataset) -> bool:
        """Whether `data` holds the neighbour bank's own training samples (same_samples)."""
        bank = self.bank_source
        return self.engine.neighbours is not None and bank is not None and same_samples(data, bank)

    def detach_neighbours(self) -> None:
        """Score with the network alone (the bank no longer matches weights that training moves)."""
        self.engine.neighbours = None
        self.bank_source = None

    def reranker_due(self) -> bool:
        """Whether model.reranker is on and its leaves are not those of the current weights."""
        return self.config.model.reranker.weight != 0 and self.current_leaves() is None

    def current_leaves(self) -> Leaves | None:
        """The leaves, if fitted on the network's current weights (a later step's would rank by a
        network that has moved on: evaluations along a run score without them)."""
        leaves = self.leaves
        return leaves if leaves is not None and leaves.step == self.engine.step else None

    def fit_reranker(self, train: Dataset, held_out: np.ndarray | None = None, indexed: bool | None = None) -> float:
        """Fit model.reranker's leaves on `train` against the network's own shortlists and samples
        drawn at random (leaf_training_set; slidepy/reranker.py). Their share is the config's, or
        for "auto" the one that re-ranks `train`'s `held_out` samples best, with how deep into the
        network's ranking they reach (on samples the network never trained on:
        reranker.validation_rows; the leaves and the votes then leave them out too), and where
        that share is at least reranker.RANKING_SHARE, the SVM's C of reranker.COSTS (a fit at
        each, climbing while each wins); else reranker.WEIGHT over the shortlist's length, at
        reranker.COST. `indexed`: whether the shortlists come through the LSH index, in place of
        the plan's choice for `train` (leaf_training_set). Returns the seconds."""
        started = time.perf_counter()
        self.check_input_dims(train)
        if train.n_labels > self.engine.n_labels:  # leaves for labels the network cannot shortlist
            raise DataError(f"{train.source} has {train.n_labels} labels but the model scores {self.engine.n_labels}")
        share = self.config.model.reranker.weight
        validation = None
        if share == AUTO and held_out is not None:
            validation = train.subset(held_out)
            train = train.subset(training_rows(train.n_samples, held_out))
        shortlist = min(self.config.model.reranker.shortlist, self.engine.n_labels)
        rows, shortlists, negatives = self.leaf_training_set(train, indexed)
        pairs = training_pairs(shortlists, train.y_indptr, train.y_indices, self.engine.n_labels, negatives, rows)

        def fit(cost: float) -> Leaves:  # each C of the climb on the same pairs
            return fit_leaves(train, shortlists, self.engine.step, rows=rows, n_labels=self.engine.n_labels,
                              negatives=negatives, cost=cost, pairs=pairs)

        fitted = {COST: fit(COST)}
        self.share_scores = None
        cost, depth = COST, shortlist
        if validation is not None:
            ids, log_scores, depths = self._slice_ranking(train, validation, shortlist)
            slice_rows = np.arange(validation.n_samples, dtype=np.int64)
            leaf_scores = {}  # {cost: the slice's leaf scores (B, K)}, each C's scored once as the climb goes

            def choose() -> tuple[tuple[float, float, int], dict]:
                for c, leaves in fitted.items():  # in fitting order: choose_blend takes the first C as the default's
                    if c not in leaf_scores:
                        leaf_scores[c] = score_leaves(leaves, validation, slice_rows, ids)
                return choose_blend(ids, log_scores, leaf_scores, validation.y_indptr, validation.y_indices, depths)

            (cost, share, depth), self.share_scores = choose()
            if share >= RANKING_SHARE:  # the leaves carry the ranking: their C matters; climb while it wins
                for other in COSTS[1:]:
                    fitted[other] = fit(other)
                    (cost, share, depth), self.share_scores = choose()
                    if cost != other:
                        break
        self.leaves = fitted[cost]._replace(share=_configured_share(share), depth=depth)
        return time.perf_counter() - started

    def compile_reranker(self, train: Dataset, held_out: np.ndarray | None = None) -> float:
        """Compile the kernels fit_reranker calls (or load them from numba's cache) by running it
        on the first COMPILE_SAMPLES of `train`'s samples, holding a quarter of them out where the
        run holds `held_out` samples out (so that "auto"'s choice compiles too), and throwing its
        leaves away. Returns the seconds, which a run reports apart from the leaves' fit, as it does
        the training kernels' compile: on a fresh install Bibtex's fit took 9.7 s, nearly all of it
        compiling, against 0.3 s from the cache."""
        started = time.perf_counter()
        n = min(train.n_samples, COMPILE_SAMPLES)
        tiny = train.subset(np.arange(n, dtype=np.int64))
        sliced = None if held_out is None or n < 2 else np.arange(n - max(1, n // 4), n, dtype=np.int64)
        # the shortlists' path (exact, or through the index) is the one the run's own fit will take
        indexed = self.shortlist_plan(train.n_samples - (0 if held_out is None else held_out.shape[0]))[1]
        kept = self.leaves, self.share_scores
        try:
            self.fit_reranker(tiny, sliced, indexed)
        finally:
            self.leaves, self.share_scores = kept
        return time.perf_counter() - started

    def shortlist_plan(self, n_samples: int) -> tuple[int, bool]:
        """reranker.shortlist_plan for this network and a training set of `n_samples`: (how many
        samples get a shortlist, whether through the LSH index)."""
        indexed = self.engine.lsh[-1] is not None
        return shortlist_plan(n_samples, self.engine.n_labels, self.engine.sizes[-1][0], indexed)

    def leaf_training_set(self, train: Dataset, indexed: bool | None = None
                          ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """(rows, shortlists, negatives): what model.reranker's leaves train against besides each
        label's positives in `train`. The network's top reranker.confusion_depth labels (R, K) of
        `train`'s samples `rows` (at most reranker.SHORTLIST_SAMPLES of them, drawn by the run's
        seed; exact or through the LSH index: shortlist_plan, or `indexed` where given), and
        (labels, samples) drawn at random (reranker.random_negatives_per_label)."""
        n, seed = self.engine.n_labels, self.config.training.seed
        k = confusion_depth(min(self.config.model.reranker.shortlist, n), n)
        n_rows, planned = self.shortlist_plan(train.n_samples)
        indexed = planned if indexed is None else indexed
        rows = np.arange(train.n_samples, dtype=np.int64)
        if n_rows < train.n_samples:
            rows = np.sort(generator(seed, SHORTLIST_STREAM).choice(train.n_samples, n_rows, replace=False))
            rows = rows.astype(np.int64)
        shortlists = self.engine.predict(train, rows, k=k, use_lsh=indexed, votes=False)[0]
        per_label = random_negatives_per_label(n, train.n_samples, train.y_indices.shape[0])
        negatives = random_negatives(n, np.arange(train.n_samples), per_label, generator(seed, RANDOM_STREAM))
        return rows, shortlists, negatives

    def _slice_ranking(self, train: Dataset, validation: Dataset,
                       depth: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        """(ids, log-scores, depths): the network's ranking of the held-out `validation` samples,
        as deep as the deepest of reranker.DEPTHS times the default `depth`
        (model.reranker.shortlist), scored as _top scores (the votes from a bank of `train`, which
        leaves them out), and those depths."""
        bank = self.engine.neighbours, self.bank_source, self._input_space
        try:
            self.attach_neighbours(train)
            depths = tuple(sorted({min(d * depth, self.engine.n_labels) for d in DEPTHS}))
            ids, scores, _ = self.engine.predict(validation, np.arange(validation.n_samples, dtype=np.int64),
                                                 k=depths[-1])
            return ids, self._log_scores(scores, None), depths
        finally:
            self.engine.neighbours, self.bank_source, self._input_space = bank

    def _top(self, data: Dataset, rows, k: int, use_lsh: bool | None = None):
        """Engine.predict's (ids, scores, active), re-ranked by the current leaves where there are
        some: the network's (and votes') top leaves.depth labels, blended with the
        leaves' scores, then any more of the k in the network's order below them (reranker.rerank_top:
        the first k' of k are the top k'); scores are then blended log-scores."""
        leaves = self.current_leaves()
        if leaves is None or leaves.share <= 0:
            return self.engine.predict(data, rows, k=k, use_lsh=use_lsh)
        rows = np.arange(data.n_samples, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        if rows.shape[0] > RERANK_SAMPLES:  # a block at a time: each sample's top `depth` are transient
            starts = range(0, rows.shape[0], RERANK_SAMPLES)
            parts = [self._top(data, rows[i:i + RERANK_SAMPLES], k, use_lsh) for i in starts]
            active = sum(part[2] * min(RERANK_SAMPLES, rows.shape[0] - i) for part, i in zip(parts, starts))
            return (np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts]),
                    active / rows.shape[0])
        short = min(leaves.depth, self.engine.n_labels)
        ids, scores, active = self.engine.predict(data, rows, k=max(k, short), use_lsh=use_lsh)
        leaf_scores = score_leaves(leaves, data, rows, ids[:, :short])
        return (*rerank_top(ids, self._log_scores(scores, use_lsh), leaf_scores, leaves.share, short, k), active)

    def _log_scores(self, scores: np.ndarray, use_lsh: bool | None) -> np.ndarray:
        """Engine.predict's scores as log-probabilities, up to a constant per sample: blended with
        the neighbours' votes they are probabilities; else softmax logits (log-softmax less its
        normaliser) or, under bce, each label's own logit (log-sigmoid)."""
        scores = scores.astype(np.float64)
        if self.engine.neighbours is not None and use_lsh is not True:  # votes blend into exact scoring only
            return np.log(np.maximum(scores, np.finfo(np.float32).tiny))
        if self.config.model.loss == "bce":
            return -np.logaddexp(0.0, -scores)
        return scores

    def predict(self, data: Dataset, k: int = 5, rows=None, use_lsh: bool | None = None):
        """Top-k label ids (B, k) int32 and scores (B, k) float32 for the samples `rows` of `data`
        (default: all), scored as the config says (exact unless inference: lsh) or as `use_lsh`
        forces."""
        self.check_input_dims(data)
        ids, scores, _ = self._top(data, rows, k, use_lsh)
        return ids, scores

    def eval_rows(self, data: Dataset, subset: int | None) -> np.ndarray:
        """The rows of `data` evaluation scores: all, or a fixed random `subset` of them (the same
        at every evaluation of a run: its stream depends on the seed alone)."""
        n = data.n_samples
        if subset is None or subset >= n:
            return np.arange(n, dtype=np.int64)
        rng = generator(self.config.training.seed, EVAL_SUBSET_STREAM)
        return np.sort(rng.choice(n, size=subset, replace=False)).astype(np.int64)

    def eval_report(self, data: Dataset, subset: int | None = -1) -> dict:
        """What an eval record holds: `evaluate` on `subset` rows (default eval.subset), plus the LSH
        diagnostics (recall against exact scoring, drift) on eval.recall_samples rows when that is
        not 0."""
        recall = self.config.eval.recall_samples
        report = self.evaluate(data, self.config.eval.subset if subset == -1 else subset)
        return {**report, **(self.engine.lsh_diagnostics(data, self.eval_rows(data, recall)) if recall else {})}

    def evaluate(self, data: Dataset, subset: int | None = None) -> dict:
        """P@k and nDCG@k (k from eval.k) on `eval_rows(data, subset)`, plus the mean active neurons
        per layer while scoring (`eval_active_mean`). On the neighbour bank's own training samples
        (`holds_in_bank`) the network scores alone: there the votes would be each sample's own
        labels, found at cosine 1, and P@1 would read 1.0 whatever the network learnt."""
        self.check_input_dims(data)
        rows, ks = self.eval_rows(data, subset), tuple(self.config.eval.k)
        bank = self.engine.neighbours
        if self.holds_in_bank(data):  # each sample would find itself in the bank and vote its own labels
            self.engine.neighbours = None
        try:
            top_ids, _, active = self._top(data, rows, max(ks))
        finally:
            self.engine.neighbours = bank
        sub = data.subset(rows)
        result = evaluate_topk(top_ids, sub.y_indptr, sub.y_indices, ks)
        result["eval_active_mean"] = [float(a) for a in active]
        return result


# Re-ranking holds each sample's network top `depth` labels, their scores and leaf scores (about
# 30 bytes a label with the sort): at depth 400, 12 KB a sample, 200 MB for this many samples.
RERANK_SAMPLES = 16_384
LEAVES_PREFIX = "reranker."
LEAVES_ARRAYS = ("indptr", "features", "weights")


def _configured_share(weight) -> float:
    """The leaves' share that model.reranker.weight sets where nothing was chosen: "auto" without
    a held-out slice is reranker.WEIGHT."""
    return WEIGHT if weight == AUTO else float(weight)


def _leaves_from(arrays: dict, meta, options, n_features: int, n_labels: int) -> Leaves | None:
    """A checkpoint's leaves for a network of `n_features` inputs and `n_labels` outputs, or None
    where it holds none; a file from before their share and depth were saved has its config's
    (`options`: model.reranker) weight and shortlist, one from before their C was saved COST."""
    if not arrays and meta is None:
        return None
    if not isinstance(meta, dict) or set(arrays) != {LEAVES_PREFIX + n for n in LEAVES_ARRAYS}:
        raise ValueError("incomplete reranker state")
    indptr, features, weights = (arrays[LEAVES_PREFIX + n] for n in LEAVES_ARRAYS)
    if (indptr.ndim != 1 or indptr.shape[0] < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0)
            or indptr[-1] != features.shape[0] or features.shape != weights.shape):
        raise ValueError("reranker arrays that do not fit together")
    leaves = Leaves(indptr.astype(np.int64), features.astype(np.int32), weights.astype(np.float32),
                    int(meta["n_features"]), int(meta["step"]), int(meta.get("depth", options.shortlist)),
                    float(meta.get("share", _configured_share(options.weight))), float(meta.get("cost", COST)))
    # the kernels index without bounds checks: a file must not point them past their arrays
    if not 0 < leaves.n_features <= n_features or np.any(leaves.features < 0) \
            or np.any(leaves.features > leaves.n_features):
        raise ValueError(f"reranker features outside the model's {n_features} inputs")
    if indptr.shape[0] - 1 > n_labels:
        raise ValueError(f"reranker leaves for {indptr.shape[0] - 1} labels in a model of {n_labels}")
    if leaves.depth < 1:
        raise ValueError(f"reranker depth {leaves.depth} (at least 1)")
    if not 0 <= leaves.share <= 1:
        raise ValueError(f"reranker share {leaves.share} (0 to 1)")
    return leaves
