"""The typed run configuration: the schema, as frozen pydantic models.

    cfg = load_config("configs/quickstart.yaml", ["training.lr=0.01"])   # configfile.py
    cfg.model.output.selection.lsh.k      # -> 6 (or "auto")
    config_to_dict(cfg)                   # plain, YAML-dumpable dict; config_from_dict round-trips it

This module is the schema alone: types, `Literal` choices, `Field` ranges, and a validator per
section for rules between keys. Reading YAML, `--set` overrides, turning pydantic's errors into
one-line messages, writing config.yaml and checking the files a config names live in
configfile.py, which imports this module (never the other way round).

Types are strict (YAML `true` is not 1, "5" is not 5) except that an int is accepted, and stored as
a float, where a float is expected; floats are finite; no int exceeds MAX_INT. A section given as
`null` (everything under it commented out) means "all defaults". Validation never touches the
filesystem, so a config naming another machine's files loads; `configfile.validate_paths` checks
them. Models are frozen; to change one in code, `cfg.model_copy(update={...})` then
`configfile.validate_config`.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from slidepy.constants import (MAX_BIN_SIZE, MAX_BUCKET_CAPACITY, MAX_INT, MAX_K, MAX_L, MAX_RANGE_POW,
                               MIN_BIN_SIZE, MIN_BUCKET_CAPACITY, MIN_RANGE_POW)

MIN_LABELS = 2           # synthetic data: fewer labels is not a classification problem
MIN_REBUILD_DECAY = 1.0  # rebuild intervals never shrink
MAX_EVAL_K = 100         # largest k for P@k / nDCG@k
AUTO = "auto"            # value of lsh.k / lsh.l chosen from target_recall


def _power_of_two(n: int) -> int:
    if n < 1 or n & (n - 1):
        raise PydanticCustomError("power_of_two", "not a power of two")
    return n


POW2 = AfterValidator(_power_of_two)  # the error formatter names it "power of two"
# Kernels index with int32 and seeds mix in uint64: no int anywhere exceeds MAX_INT.
_Int = Annotated[int, Field(le=MAX_INT)]
_PosInt = Annotated[int, Field(ge=1, le=MAX_INT)]     # counts, sizes, intervals
_NonNegInt = Annotated[int, Field(ge=0, le=MAX_INT)]  # seeds, and "every N; 0 = never"


class CrossCheck(ValueError):
    """A broken rule between keys of one section: `keys` relative to the section; `{0}`, `{1}`...
    in `text` become their full paths, which only the formatter (configfile.py) knows."""

    def __init__(self, keys: tuple[str, ...], text: str):
        super().__init__(text)
        self.keys, self.text = keys, text


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    expected: ClassVar[str] = "a mapping"     # what an error message says the section accepts

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, Mapping):         # strict mode wants the tuples and ints that YAML
            return {k: _plain(v) for k, v in data.items()}   # and numpy give as lists, np.int64
        return data


def _plain(v: Any, top: bool = True) -> Any:
    if isinstance(v, (list, tuple)) and top:  # one level: the schema has no nested lists, and
        return tuple(_plain(x, False) for x in v)   # YAML `&a [*a]` is a list inside itself
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, (bool, int)) else v


def _larger(keys: tuple[str, str], value, limit, rule: str = "") -> CrossCheck:
    """'{0}: value is larger than {1} (limit)[; rule]', the message of most cross-key rules."""
    return CrossCheck(keys, f"{{0}}: {value} is larger than {{1}} ({limit})" + (f"; {rule}" if rule else ""))


# --- Schema ---------------------------------------------------------------------------------------


class SyntheticConfig(_Section):
    """Generated multi-label data, used when `data.train` is null."""

    n_train: _PosInt = 4000
    n_test: _PosInt = 1000
    n_features: _PosInt = 2000
    n_labels: _Int = Field(1000, ge=MIN_LABELS)
    nnz_per_sample: _PosInt = 20
    labels_per_sample: tuple[_PosInt, ...] = Field((1, 3), min_length=2, max_length=2,
                                                  description="[min, max] pair of ints >= 1")
    noise_fraction: float = Field(0.2, ge=0, lt=1)
    zipf_exponent: float = Field(1.0, ge=0)
    seed: _NonNegInt = 0

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        lo, hi = self.labels_per_sample
        if lo > hi:
            raise CrossCheck(("labels_per_sample",), f"{{0}}: min {lo} is larger than max {hi}")
        if hi > self.n_labels:
            raise CrossCheck(("labels_per_sample", "n_labels"),
                             f"{{0}}: max {hi} is larger than {{1}} ({self.n_labels})")
        if self.nnz_per_sample > self.n_features:
            raise _larger(("nnz_per_sample", "n_features"), self.nnz_per_sample, self.n_features)
        return self


class DataConfig(_Section):
    train: str | None = None                      # null => data.synthetic
    test: str | None = None
    labels: str | None = None                     # one label name per line, for predictions
    format: Literal["auto", "xc", "libsvm"] = "auto"
    # The first feature id of the files (train, test, and what evaluate/predict read for this
    # model); null = the format's own: 0 for XC, 1 for LIBSVM. Set 0 for a LIBSVM file of 0-based ids.
    index_base: Literal[0, 1] | None = None
    cache: bool = True
    cache_dir: str | None = None
    skip_bad_lines: bool = False
    synthetic: SyntheticConfig = SyntheticConfig()

    @field_validator("train", "test", "labels", "cache_dir")
    @classmethod
    def _home(cls, path: str | None) -> str | None:
        """~/data/train.txt means the home directory's, as in a shell (a config file is no shell)."""
        return os.path.expanduser(path) if path else path


class RebuildConfig(_Section):
    """When hash tables are rebuilt (neurons re-inserted) and hash functions redrawn."""

    initial_interval: _PosInt = 50                   # batches before the first rebuild
    decay: float = Field(1.1, ge=MIN_REBUILD_DECAY)  # each interval = previous * decay
    max_interval: _PosInt | None = None
    rehash_every: _NonNegInt = 0                     # redraw hashes every N rebuilds; 0 = never
    drift_threshold: float | None = Field(None, gt=0, le=1)
    drift_sample: _PosInt = 1024
    drift_check_every: _PosInt = 50                  # batches
    # kmeans: re-centre clusters on their members' current weights every N batches between
    # rebuilds (O(N D), cheap); 0 = never.
    refresh_every: _NonNegInt = 10
    # Spread a scheduled rebuild's per-row work (hashing every row, or assigning it to a cluster)
    # over this many steps, so that no step stalls for all of it; 0 or 1 = all in one step.
    spread_steps: _NonNegInt = 0
    # The clock the intervals count on: plain "steps", or "lr", steps weighted by the learning
    # rate over its peak (rows move at that pace, so a decayed rate rebuilds less often: 25-40%
    # fewer rebuild seconds, for -0.0015 P@1 on DebianNextWord's two epochs; see the README).
    pace: Literal["lr", "steps"] = "steps"

    @model_validator(mode="after")
    def _check(self) -> RebuildConfig:
        if self.max_interval is not None and self.max_interval < self.initial_interval:
            raise CrossCheck(("max_interval", "initial_interval"),
                             f"{{0}}: {self.max_interval} is smaller than {{1}} ({self.initial_interval})")
        if self.spread_steps > self.initial_interval:
            raise CrossCheck(("spread_steps", "initial_interval"),
                             f"{{0}}: {self.spread_steps} is larger than {{1}} ({self.initial_interval}): a "
                             f"rebuild would still be under way when the next one is due")
        return self


class Lsh(_Section):
    """Hash family and table shape for one layer."""

    family: Literal["kmeans", "dwta", "wta", "srp", "minhash"] = "kmeans"
    clusters: Annotated[int, Field(ge=2, le=MAX_INT)] | Literal["auto"] = "auto"  # kmeans: per table
    k: Annotated[int, Field(ge=1, le=MAX_K)] | Literal["auto"] = 6     # hashes per table
    l: Annotated[int, Field(ge=1, le=MAX_L)] | Literal["auto"] = "auto"  # tables (kmeans auto: 1)
    bin_size: Annotated[int, POW2] = Field(8, ge=MIN_BIN_SIZE, le=MAX_BIN_SIZE)   # WTA/DWTA
    srp_density: float = Field(0.33, gt=0, le=1)
    range_pow: int = Field(16, ge=MIN_RANGE_POW, le=MAX_RANGE_POW)    # 2**range_pow buckets
    bucket_capacity: Annotated[int, POW2] = Field(32, ge=MIN_BUCKET_CAPACITY, le=MAX_BUCKET_CAPACITY)
    insert: Literal["fifo", "reservoir"] = "fifo"
    policy: Literal["vanilla", "topk", "threshold"] = "vanilla"
    threshold: _PosInt = 2                           # min tables hit, for policy threshold
    # Share of the budget (after the labels) always given to uniform negatives: LSH-only negatives
    # are all hard ones, and neurons the tables never return then drift up unchecked at exact scoring.
    random_share: float = Field(0.25, ge=0, lt=1)
    target_recall: float = Field(0.9, gt=0, lt=1)
    target_active_fraction: float = Field(0.01, gt=0, le=1)
    rebuild: RebuildConfig = RebuildConfig()

    @model_validator(mode="after")
    def _check(self) -> Lsh:
        if self.family == "minhash":  # hashing.py keeps it, for the hashing tests and sparse sets
            raise CrossCheck(("family",), "{0}: minhash hashes which coordinates are non-zero, and a layer's "
                                          "weight rows are dense, so every neuron would get one code: use kmeans, "
                                          "srp or dwta")
        return self


class Selection(_Section):
    """How one layer picks its active neurons per sample, in training and in eval."""

    mode: Literal["all", "random", "lsh"] = "all"
    budget: _PosInt = 1024               # max active neurons per sample (clipped to layer size)
    min_active: _NonNegInt = 0           # top up with random neurons to at least this many
    inference: Literal["exact", "lsh"] = "exact"
    # Output layer, modes random/lsh: weight each uniform negative as the neurons it stands for
    # (sampled-softmax correction). Without it, labels rarely drawn as negatives drift upwards.
    correction: bool = True
    # Output layer, modes random/lsh, in training: "batch" gives every sample of a step the same
    # uniform negatives (less the ones already in its set), "sample" draws them per sample; "auto"
    # is batch on a k-means index and sample otherwise (Engine.shares_negatives says why). Both are
    # uniform samples; shared ones touch a few hundred weight rows a step instead of most of the
    # layer, so the optimizer and the kernel's row reads shrink (selection.draw_negative_pool).
    negatives: Literal["auto", "batch", "sample"] = "auto"
    lsh: Lsh = Lsh()

    @property
    def uses_lsh(self) -> bool:
        """True when hash tables are needed for this layer (training or inference)."""
        return self.mode == "lsh" or self.inference == "lsh"

    @model_validator(mode="after")
    def _check(self) -> Selection:
        if self.min_active > self.budget:
            raise _larger(("min_active", "budget"), self.min_active, self.budget, "min_active must be <= budget")
        lsh = self.lsh
        if self.uses_lsh and lsh.policy == "threshold" and lsh.l != AUTO and lsh.threshold > lsh.l:
            raise _larger(("lsh.threshold", "lsh.l", "lsh.policy"), lsh.threshold, lsh.l,
                          "policy 'threshold' needs threshold <= l")
        return self


class HiddenLayer(_Section):
    """One hidden layer; in YAML a bare int N is shorthand for {size: N}."""

    expected: ClassVar[str] = "a layer size (int) or a mapping {size: N, selection: ...}"
    size: _PosInt
    selection: Selection = Selection()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"size": data} if isinstance(data, int) and not isinstance(data, bool) else data


class OutputLayer(_Section):
    selection: Selection = Selection()


class Neighbours(_Section):
    """Label votes of the nearest training samples, blended into exact scoring at prediction
    (slidepy/neighbours.py); weight 0 turns them off."""

    k: _PosInt = 25
    weight: float = Field(0.0, ge=0, le=1)
    temperature: float = Field(0.05, gt=0)  # a neighbour's vote counts exp(cosine similarity / temperature)
    # At most this many training samples in the bank, drawn at random (seeded by training.seed);
    # None: all. Bounds the bank's memory and each prediction's S x D similarities.
    bank_samples: _PosInt | None = None
    # Where "nearest" is measured: the network's last hidden space, the input features (cosine of
    # the rows), or "auto", whichever votes better for held-out training samples at each bank build.
    space: Literal["hidden", "input", "auto"] = "hidden"


class Reranker(_Section):
    """Per-label linear leaves over the input rows that re-rank the network's top `shortlist`
    labels (or as many more as "auto" chooses) at prediction (slidepy/reranker.py), fitted on the
    training set when training ends; weight 0 turns them off, 1 leaves the network only the
    choice of that shortlist, "auto" chooses it on a slice of the training set held out of the
    network's training (reranker.validation_rows; reranker.WEIGHT where the set is too small)."""

    weight: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = 0.0  # the leaves' share of the blended log-score
    shortlist: _PosInt = 50  # labels a sample the leaves re-rank ("auto": or 2-8 x it); they train against 2 x it


class ModelConfig(_Section):
    hidden: tuple[HiddenLayer, ...] = Field((HiddenLayer(size=128),), min_length=1,
                                            description="list of at least one hidden layer (int size or mapping)")
    output: OutputLayer = OutputLayer()
    activation: Literal["relu"] = "relu"
    loss: Literal["softmax", "bce"] = "softmax"
    init: Literal["he", "glorot"] = "glorot"
    dropout: float = Field(0.0, ge=0, lt=1)          # of every hidden layer's outputs, in training
    # The network trains as if every input value were multiplied by this: layer 0's initial weights
    # and its weights' step size scale with it (Engine.input_scale). "auto": 1 where the training
    # rows' mean L2 norm lies in [1, 8], else the factor to the nearer edge (model.input_scale_for),
    # resolved by the trainer and written into the run's config.yaml.
    input_scale: Annotated[float, Field(gt=0)] | Literal["auto"] = AUTO
    neighbours: Neighbours = Neighbours()
    reranker: Reranker = Reranker()

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.neighbours.weight > 0:
            if self.loss != "softmax":  # the votes are shares of one unit, like softmax probabilities
                raise CrossCheck(("neighbours.weight", "loss"), f"{{0}}: {self.neighbours.weight} needs {{1}} "
                                 f"softmax (the votes blend into softmax probabilities), not {self.loss!r}")
            if self.output.selection.inference != "exact":
                raise CrossCheck(("neighbours.weight", "output.selection.inference"),
                                 f"{{0}}: {self.neighbours.weight} needs {{1}} exact (votes blend into exact scoring)")
        return self


class TrainingConfig(_Section):
    epochs: _PosInt = 5
    batch_size: _PosInt = 128
    lr: float = Field(0.001, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)           # Adam only: decoupled (AdamW), weight rows only
    seed: _NonNegInt = 0
    threads: _PosInt | None = None                   # null = all cores
    deterministic: bool = False                      # forces threads=1
    max_steps: _PosInt | None = None
    time_budget_s: float | None = Field(None, gt=0)  # stop after this many training seconds
    # Learning rate over the run: constant, or linear decay to 0 at its planned end (the last
    # epoch / max_steps, or time_budget_s, whichever comes first); either after warmup_steps of
    # linear ramp-up from 0.
    lr_schedule: Literal["constant", "linear"] = "constant"
    warmup_steps: _NonNegInt = 0
    log_every: _PosInt = 50                          # steps
    on_nan: Literal["stop", "rollback"] = "stop"


class EvalConfig(_Section):
    every: _NonNegInt = 0                            # steps; 0 = at epoch ends only
    subset: _PosInt | None = 2000                    # null = whole test set
    k: tuple[Annotated[int, Field(ge=1, le=MAX_EVAL_K)], ...] = Field(
        (1, 3, 5), min_length=1, description=f"sorted list of unique ints in [1, {MAX_EVAL_K}]")
    recall_samples: _NonNegInt = 256                 # 0 = LSH diagnostics off
    # An evaluation along the run is skipped while those so far have taken more than this share
    # of the training seconds (steps + rebuilds; counted from the process's start or resume); the
    # final one never is. null = every scheduled one. The default leaves the final evaluation the
    # rest of a fifth of the run: on a small set one evaluation costs as much as an epoch
    # (Delicious' config: 7 whole-test-set evaluations, 3.1 s of a 7.7 s run, at null).
    max_share: float | None = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if any(a >= b for a, b in zip(self.k, self.k[1:])):
            raise CrossCheck(("k",), f"{{0}}: {list(self.k)} is not sorted ascending without repeats")
        return self


class OutputConfig(_Section):
    run_dir: str = Field("runs/default", min_length=1)  # "" (an empty --out "$RUN") would be the current directory

    @field_validator("run_dir")
    @classmethod
    def _home(cls, path: str) -> str:
        return os.path.expanduser(path)  # as data paths are
    checkpoint_every: _NonNegInt = 1000              # steps; 0 = only at end/interrupt
    # Also (or, with checkpoint_every 0, only) after this many seconds of training since the last
    # checkpoint (steps + index rebuilds, as training.time_budget_s counts them); null = by steps
    # alone. A checkpoint holds the weights and both Adam moments, 12 bytes a parameter.
    checkpoint_every_s: float | None = Field(None, gt=0)
    keep_last: _PosInt = 3


class DistributedConfig(_Section):
    workers: _NonNegInt = 0                          # 0 = single process
    ray_address: str | None = None                   # null = start a local Ray
    sync_every: _PosInt = 50                         # steps between weight syncs


class Config(_Section):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    eval: EvalConfig = EvalConfig()
    output: OutputConfig = OutputConfig()
    distributed: DistributedConfig = DistributedConfig()

    @property
    def n_layers(self) -> int:
        """Number of weight layers: the hidden layers plus the output layer."""
        return len(self.model.hidden) + 1


def layer_selections(cfg: Config) -> list[Selection]:
    """The Selection of every weight layer, hidden layers first, then the output layer."""
    return [layer.selection for layer in cfg.model.hidden] + [cfg.model.output.selection]


def config_to_dict(cfg: Config) -> dict:
    """A plain dict of builtins (lists, not tuples); YAML-dumpable; round-trips via config_from_dict."""
    return cfg.model_dump(mode="json", warnings=False)   # warnings: validate_config reports bad values
