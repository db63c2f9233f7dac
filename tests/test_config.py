"""Tests for slidepy.config and configfile: schema defaults, strict validation, overrides, round-trips,
shipped configs."""

import copy
import pathlib

import pydantic
import pytest
import yaml

from slidepy.config import (
    MAX_EVAL_K,
    MAX_K,
    MAX_L,
    MAX_RANGE_POW,
    Config,
    HiddenLayer,
    Selection,
    config_to_dict,
    layer_selections,
)
from slidepy.configfile import config_from_dict, dump_config, load_config, validate_config, validate_paths
from slidepy.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def nested(path: str, value):
    """{'a': {'b': value}} from 'a.b' (no list indices)."""
    d = value
    for part in reversed(path.split(".")):
        d = {part: d}
    return d


def raises(d, *fragments):
    with pytest.raises(ConfigError) as info:
        config_from_dict(d)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


# --- defaults -----------------------------------------------------------------------------------


def test_defaults():
    cfg = config_from_dict({})
    assert cfg == Config()
    assert config_from_dict(None) == Config()
    assert cfg.data.train is None and cfg.data.format == "auto" and cfg.data.cache is True
    assert cfg.data.synthetic.labels_per_sample == (1, 3)
    assert [h.size for h in cfg.model.hidden] == [128]
    assert cfg.model.output.selection.mode == "all"
    lsh = cfg.model.output.selection.lsh
    assert lsh.family == "kmeans" and lsh.clusters == "auto" and lsh.l == "auto" and lsh.k == 6
    assert cfg.model.output.selection.lsh.rebuild.max_interval is None
    assert cfg.model.init == "glorot" and cfg.model.loss == "softmax"
    assert cfg.training.lr == 0.001 and cfg.training.eps == 1e-8
    assert cfg.eval.k == (1, 3, 5) and cfg.eval.subset == 2000
    assert cfg.output.run_dir == "runs/default"
    assert cfg.n_layers == 2


def test_layer_selections_and_n_layers():
    cfg = config_from_dict({"model": {
        "hidden": [{"size": 64, "selection": {"mode": "random", "budget": 8}}, 32],
        "output": {"selection": {"mode": "lsh", "budget": 100}},
    }})
    sels = layer_selections(cfg)
    assert cfg.n_layers == 3
    assert [s.mode for s in sels] == ["random", "all", "lsh"]
    assert all(isinstance(s, Selection) for s in sels)
    assert sels[-1].uses_lsh and not sels[0].uses_lsh


def test_hidden_shorthand_int():
    cfg = config_from_dict({"model": {"hidden": [256, {"size": 64}, 32]}})
    assert [h.size for h in cfg.model.hidden] == [256, 64, 32]
    assert all(isinstance(h, HiddenLayer) for h in cfg.model.hidden)
    assert cfg.model.hidden[0].selection == Selection()
    # bool is not a shorthand size
    raises({"model": {"hidden": [True]}}, "model.hidden.0")


def test_int_accepted_for_float_and_stored_as_float():
    cfg = config_from_dict({"training": {"lr": 1}, "data": {"synthetic": {"noise_fraction": 0}}})
    assert cfg.training.lr == 1.0 and type(cfg.training.lr) is float
    assert type(cfg.data.synthetic.noise_fraction) is float


def test_auto_k_and_l():
    cfg = config_from_dict(nested("model.output.selection.lsh", {"k": "auto", "l": "auto"}))
    assert cfg.model.output.selection.lsh.k == "auto"
    assert cfg.model.output.selection.lsh.l == "auto"
    raises(nested("model.output.selection.lsh.k", "Auto"), "model.output.selection.lsh.k", "'auto'")


def test_null_section_means_defaults():
    assert config_from_dict({"eval": None, "model": {"output": None}}) == Config()


def test_configs_are_frozen():
    cfg = Config()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.training.lr = 0.5
    assert hash(cfg) == hash(Config())


# --- unknown keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("d, path, hint", [
    ({"trainig": {}}, "trainig", "training"),
    ({"training": {"lr_rate": 0.1}}, "training.lr_rate", "training.lr"),
    ({"training": {"epoch": 3}}, "training.epoch", "training.epochs"),
    ({"model": {"output": {"selection": {"lsh": {"rebuild": {"decya": 2}}}}}},
     "model.output.selection.lsh.rebuild.decya", "model.output.selection.lsh.rebuild.decay"),
    ({"model": {"hidden": [64, {"size": 32, "selecton": {}}]}},
     "model.hidden.1.selecton", "model.hidden.1.selection"),
    ({"model": {"hidden": [{"siz": 32}]}}, "model.hidden.0.siz", "model.hidden.0.size"),
    ({"model": {"epochs": 3}}, "model.epochs", "training.epochs"),   # right key, wrong section
])
def test_unknown_key_names_path_and_suggestion(d, path, hint):
    msg = raises(d)
    assert msg == f"unknown key {path!r}; did you mean {hint!r}?"


def test_unknown_key_without_close_match_lists_valid_keys():
    msg = raises({"eval": {"zzzqqq": 1}}, "unknown key 'eval.zzzqqq'", "valid keys here:", "subset")
    assert "did you mean" not in msg


def test_missing_required_hidden_size():
    raises({"model": {"hidden": [{"selection": {"mode": "all"}}]}},
           "model.hidden.0.size", "missing")


# --- wrong types --------------------------------------------------------------------------------


@pytest.mark.parametrize("path, value, expected", [
    ("training.epochs", "five", "int"),            # str for int
    ("training.epochs", True, "int"),              # bool is not an int
    ("training.batch_size", 12.0, "int"),          # float is not an int
    ("training.lr", "abc", "float"),
    ("training.lr", False, "float"),               # bool is not a float either
    ("training.deterministic", 1, "bool"),
    ("training.deterministic", "yes please", "bool"),
    ("data.train", 5, "str"),
    ("output.run_dir", None, "str"),               # not optional
    ("model.loss", 3, "one of"),
    ("training", [1, 2], "mapping"),               # list for dict
    ("model.output.selection", "lsh", "mapping"),  # str for dict
    ("data.synthetic", 7, "mapping"),
    ("model.hidden", {"size": 3}, "list"),         # dict for list
    ("model.hidden", 128, "list"),
    ("eval.k", 5, "list"),
    ("data.synthetic.labels_per_sample", 3, "pair"),
    ("model.output.selection.lsh.k", 2.5, "int"),
])
def test_wrong_type_names_path_value_and_type(path, value, expected):
    msg = raises(nested(path, value), path, expected, repr(value))
    assert "expected" in msg


def test_wrong_type_in_list_item():
    raises({"eval": {"k": [1, "3"]}}, "eval.k.1", "'3'", "int")
    raises({"model": {"hidden": ["wide"]}}, "model.hidden.0", "'wide'")
    raises({"data": {"synthetic": {"labels_per_sample": [1, True]}}},
           "data.synthetic.labels_per_sample.1", "True")


def test_top_level_must_be_mapping():
    raises([1, 2], "config", "mapping")


def test_non_finite_float_rejected():
    raises(nested("training.lr", float("inf")), "training.lr", "finite")
    raises(nested("training.lr", float("nan")), "training.lr")


# --- out of range ---------------------------------------------------------------------------------

# (key path, bad value, fragment of the allowed range in the message)
OUT_OF_RANGE = [
    ("data.synthetic.n_train", 0, ">= 1"),                          # int >= 1
    ("data.synthetic.n_labels", 1, ">= 2"),
    ("data.synthetic.seed", -1, ">= 0"),
    ("data.synthetic.noise_fraction", 1.0, "[0, 1)"),               # half-open float interval
    ("data.synthetic.noise_fraction", -0.1, "[0, 1)"),
    ("data.synthetic.zipf_exponent", -0.5, ">= 0"),
    ("data.synthetic.labels_per_sample", [0, 2], ">= 1"),
    ("data.synthetic.labels_per_sample", [1, 2, 3], "pair"),
    ("data.format", "csv", "'xc'"),                                 # choices
    ("model.activation", "tanh", "'relu'"),
    ("model.loss", "mse", "'bce'"),
    ("model.init", "xavier", "'he'"),
    ("model.hidden", [], "at least one"),                           # non-empty list
    ("model.hidden", [0], ">= 1"),
    ("model.output.selection.mode", "topk", "'lsh'"),
    ("model.output.selection.budget", 0, ">= 1"),
    ("model.output.selection.min_active", -1, ">= 0"),
    ("model.output.selection.inference", "approx", "'exact'"),
    ("model.output.selection.lsh.family", "simhash", "'srp'"),
    ("model.output.selection.lsh.k", 0, f"[1, {MAX_K}]"),            # closed int interval
    ("model.output.selection.lsh.k", MAX_K + 1, f"[1, {MAX_K}]"),
    ("model.output.selection.lsh.l", MAX_L + 1, f"[1, {MAX_L}]"),
    ("model.output.selection.lsh.bin_size", 3, "power of two"),     # power of two
    ("model.output.selection.lsh.bin_size", 1, "power of two in [2, 256]"),
    ("model.output.selection.lsh.bin_size", 512, "power of two in [2, 256]"),
    ("model.output.selection.lsh.bucket_capacity", 0, "[1, 4096]"),
    ("model.output.selection.lsh.bucket_capacity", 48, "power of two"),
    ("model.output.selection.lsh.bucket_capacity", 8192, "[1, 4096]"),
    ("model.output.selection.lsh.srp_density", 0.0, "(0, 1]"),      # open lower bound
    ("model.output.selection.lsh.srp_density", 1.5, "(0, 1]"),
    ("model.output.selection.lsh.range_pow", 0, f"[1, {MAX_RANGE_POW}]"),
    ("model.output.selection.lsh.range_pow", MAX_RANGE_POW + 1, f"[1, {MAX_RANGE_POW}]"),
    ("model.output.selection.lsh.insert", "lru", "'reservoir'"),
    ("model.output.selection.lsh.policy", "greedy", "'threshold'"),
    ("model.output.selection.lsh.threshold", 0, ">= 1"),
    ("model.output.selection.lsh.target_recall", 1.0, "(0, 1)"),    # open both ends
    ("model.output.selection.lsh.target_recall", 0, "(0, 1)"),
    ("model.output.selection.lsh.target_active_fraction", 0.0, "(0, 1]"),
    ("model.output.selection.lsh.rebuild.initial_interval", 0, ">= 1"),
    ("model.output.selection.lsh.rebuild.decay", 0.9, ">= 1"),
    ("model.output.selection.lsh.rebuild.max_interval", 0, ">= 1 or null"),
    ("model.output.selection.lsh.rebuild.rehash_every", -1, ">= 0"),
    ("model.output.selection.lsh.rebuild.drift_threshold", 0.0, "(0, 1] or null"),
    ("model.output.selection.lsh.rebuild.drift_sample", 0, ">= 1"),
    ("model.output.selection.lsh.rebuild.drift_check_every", 0, ">= 1"),
    ("training.epochs", 0, ">= 1"),
    ("training.batch_size", 0, ">= 1"),
    ("training.lr", 0.0, "> 0"),
    ("training.lr", -1e-3, "> 0"),
    ("training.optimizer", "rmsprop", "'adam'"),
    ("training.beta1", 1.0, "[0, 1)"),
    ("training.beta2", -0.1, "[0, 1)"),
    ("training.eps", 0, "> 0"),
    ("training.threads", 0, ">= 1 or null"),
    ("training.max_steps", 0, ">= 1 or null"),
    ("training.log_every", 0, ">= 1"),
    ("training.on_nan", "ignore", "'rollback'"),
    ("eval.every", -1, ">= 0"),
    ("eval.subset", 0, ">= 1 or null"),
    ("eval.k", [], "must not be empty"),
    ("output.run_dir", "", "must not be empty"),  # an empty --out "$RUN" would write into the current directory
    ("eval.k", [0, 1], "[1, 100]"),
    ("eval.k", [1, MAX_EVAL_K + 1], f"[1, {MAX_EVAL_K}]"),
    ("eval.k", [3, 1], "sorted"),
    ("eval.k", [1, 1, 5], "sorted"),
    ("eval.recall_samples", -1, ">= 0"),
    ("output.checkpoint_every", -5, ">= 0"),
    ("output.keep_last", 0, ">= 1"),
]


@pytest.mark.parametrize("path, value, allowed", OUT_OF_RANGE)
def test_out_of_range_names_path_value_and_range(path, value, allowed):
    msg = raises(nested(path, value), path, allowed)
    if not isinstance(value, list):
        assert repr(value) in msg, msg


@pytest.mark.parametrize("path, value, item_path, shown", [
    ("eval.k", [1, 0], "eval.k.1", "0 is out of range; expected int in [1, 100]"),
    ("data.synthetic.labels_per_sample", [0, 2], "data.synthetic.labels_per_sample.0",
     "0 is out of range; expected int >= 1"),
    ("model.hidden", [64, 0], "model.hidden.1.size", "0 is out of range; expected int >= 1"),
])
def test_out_of_range_list_item_names_index(path, value, item_path, shown):
    msg = raises(nested(path, value))
    assert msg == f"{item_path}: {shown}"


def test_choice_suggestion():
    raises(nested("model.loss", "softmx"), "model.loss", "'softmx'", "did you mean 'softmax'?")


def test_optional_fields_accept_null():
    cfg = config_from_dict({
        "training": {"threads": None, "max_steps": None},
        "eval": {"subset": None},
        "data": {"cache_dir": None, "test": None},
        "model": {"output": {"selection": {"lsh": {"rebuild": {
            "max_interval": None, "drift_threshold": None}}}}},
    })
    assert cfg.eval.subset is None and cfg.training.threads is None


# --- cross-field checks ---------------------------------------------------------------------------


def test_labels_per_sample_min_le_max():
    raises(nested("data.synthetic.labels_per_sample", [4, 2]),
           "data.synthetic.labels_per_sample", "min 4", "max 2")
    assert config_from_dict(nested("data.synthetic.labels_per_sample", [2, 2])) \
        .data.synthetic.labels_per_sample == (2, 2)


def test_labels_per_sample_max_le_n_labels():
    raises({"data": {"synthetic": {"n_labels": 5, "labels_per_sample": [1, 6]}}},
           "data.synthetic.labels_per_sample", "n_labels")


def test_nnz_le_n_features():
    raises({"data": {"synthetic": {"n_features": 10, "nnz_per_sample": 11}}},
           "data.synthetic.nnz_per_sample", "n_features")


def test_min_active_le_budget():
    raises(nested("model.output.selection", {"budget": 10, "min_active": 11}),
           "model.output.selection.min_active", "11", "budget", "10")
    raises({"model": {"hidden": [{"size": 8, "selection": {"budget": 4, "min_active": 5}}]}},
           "model.hidden.0.selection.min_active")
    config_from_dict(nested("model.output.selection", {"budget": 10, "min_active": 10}))


def test_threshold_le_l_for_lsh_threshold_policy():
    sel = {"mode": "lsh", "lsh": {"policy": "threshold", "l": 4, "threshold": 5}}
    raises(nested("model.output.selection", sel),
           "model.output.selection.lsh.threshold", "5", "model.output.selection.lsh.l", "4")
    # inference lsh needs the tables too
    sel_inf = {"mode": "all", "inference": "lsh", "lsh": sel["lsh"]}
    raises(nested("model.output.selection", sel_inf), "threshold")
    # not checked when the layer never uses LSH, or when l is auto, or for other policies
    config_from_dict(nested("model.output.selection", {**sel, "mode": "random"}))
    config_from_dict(nested("model.output.selection",
                            {"mode": "lsh", "lsh": {"policy": "threshold", "l": "auto",
                                                    "threshold": 600}}))
    config_from_dict(nested("model.output.selection",
                            {"mode": "lsh", "lsh": {"policy": "topk", "l": 4, "threshold": 5}}))


def test_rebuild_max_interval_ge_initial():
    raises(nested("model.output.selection.lsh.rebuild", {"initial_interval": 100,
                                                         "max_interval": 50}),
           "max_interval", "initial_interval")


def test_rebuild_spread_within_the_first_interval():
    raises(nested("model.output.selection.lsh.rebuild", {"initial_interval": 10, "spread_steps": 20}),
           "spread_steps", "initial_interval")
    config_from_dict(nested("model.output.selection.lsh.rebuild", {"initial_interval": 10, "spread_steps": 10}))


# --- data.labels, training.time_budget_s, distributed ----------------------------------------------


def test_new_fields_defaults_and_values():
    cfg = Config()
    assert cfg.data.labels is None and cfg.training.time_budget_s is None
    assert (cfg.distributed.workers, cfg.distributed.ray_address, cfg.distributed.sync_every) == (0, None, 50)
    cfg = config_from_dict({"data": {"labels": "data/labels.txt"}, "training": {"time_budget_s": 90},
                            "distributed": {"workers": 4, "ray_address": "ray://head:10001", "sync_every": 1}})
    assert cfg.data.labels == "data/labels.txt"
    assert cfg.training.time_budget_s == 90.0 and type(cfg.training.time_budget_s) is float
    assert (cfg.distributed.workers, cfg.distributed.ray_address, cfg.distributed.sync_every) == \
        (4, "ray://head:10001", 1)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_from_dict({"distributed": None}) == Config()


@pytest.mark.parametrize("path, value, message", [
    ("data.labels", 3, "data.labels: expected str or null, got 3 (int)"),
    ("data.labels", ["a.txt"], "data.labels: expected str or null, got ['a.txt'] (list)"),
    ("training.time_budget_s", 0, "training.time_budget_s: 0 is out of range; expected float > 0 or null"),
    ("training.time_budget_s", -1.5, "training.time_budget_s: -1.5 is out of range; expected float > 0 or null"),
    ("training.time_budget_s", float("inf"), "training.time_budget_s: inf is not finite; expected float > 0 or null"),
    ("training.time_budget_s", "1h", "training.time_budget_s: expected float > 0 or null, got '1h' (str)"),
    ("distributed.workers", -1, "distributed.workers: -1 is out of range; expected int >= 0"),
    ("distributed.workers", True, "distributed.workers: expected int >= 0, got True (bool)"),
    ("distributed.workers", 2.0, "distributed.workers: expected int >= 0, got 2.0 (float)"),
    ("distributed.workers", 2**31, "distributed.workers: 2147483648 is too large; expected int >= 0, "
                                   "at most 2147483647"),
    ("distributed.ray_address", 6379, "distributed.ray_address: expected str or null, got 6379 (int)"),
    ("distributed.sync_every", 0, "distributed.sync_every: 0 is out of range; expected int >= 1"),
    ("distributed.sync_every", None, "distributed.sync_every: expected int >= 1, got None (null)"),
    ("distributed", [2], "distributed: expected a mapping, got [2] (list)"),
])
def test_new_fields_validation(path, value, message):
    assert raises(nested(path, value)) == message


def test_new_fields_unknown_keys_and_overrides():
    raises({"distributed": {"worker": 2}}, "unknown key 'distributed.worker'; did you mean 'distributed.workers'?")
    raises({"training": {"time_budget": 5}}, "did you mean 'training.time_budget_s'?")
    raises({"workers": 2}, "unknown key 'workers'; did you mean 'distributed.workers'?")
    cfg = load_config({}, ["distributed.workers=3", "distributed.ray_address=auto", "training.time_budget_s=1e2"])
    assert (cfg.distributed.workers, cfg.distributed.ray_address, cfg.training.time_budget_s) == (3, "auto", 100.0)
    with pytest.raises(ConfigError, match=r"^--set distributed.sync_every=0: distributed.sync_every: 0 is out"):
        load_config({}, ["distributed.workers=3", "distributed.sync_every=0"])


def test_labels_path_checked_by_validate_paths(tmp_path):
    labels = tmp_path / "labels.txt"
    cfg = config_from_dict({"data": {"labels": str(labels)}})
    with pytest.raises(ConfigError, match=r"^data.labels: .*labels.txt does not exist$"):
        validate_paths(cfg, output=False)
    labels.write_text("cat\ndog\n")
    validate_paths(cfg, output=False)


# --- overrides ------------------------------------------------------------------------------------


def test_override_nested_and_list_index():
    cfg = load_config({"model": {"hidden": [64, 32]}}, [
        "training.lr=0.01",
        "model.hidden.0.size=256",
        "model.hidden.1.selection.mode=random",
        "model.output.selection.mode=lsh",
        "eval.k=[1, 10]",
        "training.threads=null",
        "training.eps=1e-6",            # YAML 1.1 would read this as a string
    ])
    assert cfg.training.lr == 0.01
    assert [h.size for h in cfg.model.hidden] == [256, 32]
    assert cfg.model.hidden[1].selection.mode == "random"
    assert cfg.model.output.selection.mode == "lsh"
    assert cfg.eval.k == (1, 10)
    assert cfg.training.threads is None
    assert cfg.training.eps == 1e-6
    # an int for a hidden layer is its size (the shorthand), its other settings kept
    cfg = load_config({"model": {"hidden": [{"size": 64, "selection": {"mode": "random", "budget": 16}}]}},
                      ["model.hidden.0=128"])
    assert cfg.model.hidden[0].size == 128 and cfg.model.hidden[0].selection.mode == "random"


def test_minhash_is_refused_for_a_layer():
    """It hashes which coordinates are non-zero; weight rows are dense, so every neuron of a layer
    would share one code (a review found every table holding one bucket)."""
    with pytest.raises(ConfigError, match="lsh.family: minhash hashes which coordinates are non-zero"):
        load_config({"model": {"output": {"selection": {"mode": "lsh", "lsh": {"family": "minhash"}}}}})


def test_override_replaces_whole_list_then_indexes_it():
    cfg = load_config({}, ["model.hidden=[512, 256]", "model.hidden.1.size=64"])
    assert [h.size for h in cfg.model.hidden] == [512, 64]


def test_overrides_applied_together():
    # each alone would break min_active <= budget; together they are fine
    cfg = load_config(nested("model.output.selection", {"budget": 10, "min_active": 5}),
                      ["model.output.selection.min_active=50",
                       "model.output.selection.budget=100"])
    assert cfg.model.output.selection.min_active == 50


@pytest.mark.parametrize("override, fragments", [
    ("training.lr=abc", ["--set training.lr=abc: ", "training.lr", "'abc'", "float"]),
    ("training.epochs=true", ["--set training.epochs=true: ", "True", "int"]),
    ("training.lr_rate=0.1", ["--set training.lr_rate=0.1: ",
                              "unknown key 'training.lr_rate'; did you mean 'training.lr'?"]),
    ("trianing.lr=0.1", ["--set trianing.lr=0.1: ", "did you mean 'training'?"]),
    ("model.hidden.3.size=8", ["--set model.hidden.3.size=8: ", "model.hidden", "index"]),
    ("model.hidden.x.size=8", ["--set model.hidden.x.size=8: ", "index"]),
    ("training.lr.value=1", ["--set training.lr.value=1: ", "not a section"]),
    ("training.lr", ["--set training.lr: ", "KEY=VALUE"]),
    ("=3", ["--set =3: "]),
    ("training.lr=[1", ["--set training.lr=[1: ", "cannot parse"]),
    ("model.output.selection.lsh.k=99", ["--set model.output.selection.lsh.k=99: ", "[1, 32]"]),
    ("model.output.selection.min_active=5000",
     ["--set model.output.selection.min_active=5000: ", "budget"]),
])
def test_override_errors_name_the_override(override, fragments):
    with pytest.raises(ConfigError) as info:
        load_config({}, [override])
    msg = str(info.value)
    assert msg.startswith(fragments[0]), msg
    for frag in fragments[1:]:
        assert frag in msg, msg


def test_override_error_names_the_culprit_among_several():
    with pytest.raises(ConfigError) as info:
        load_config({}, ["training.epochs=2", "eval.k=[0]", "training.lr=0.1"])
    assert str(info.value).startswith("--set eval.k=[0]: eval.k.0"), str(info.value)
    # a cross-field error is blamed on the override that touched either side
    with pytest.raises(ConfigError) as info:
        load_config({}, ["training.epochs=2", "model.output.selection.budget=4",
                         "model.output.selection.min_active=3", "model.output.selection.budget=2"])
    assert str(info.value).startswith("--set model.output.selection.budget=2: ")


def test_override_on_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 0.5\n")
    cfg = load_config(str(path), ["training.lr=0.25"])
    assert cfg.training.lr == 0.25
    assert load_config(path).training.lr == 0.5   # PathLike accepted


def test_overrides_do_not_mutate_input():
    d = {"model": {"hidden": [64]}}
    before = copy.deepcopy(d)
    load_config(d, ["model.hidden.0.size=8"])
    assert d == before


# --- files ----------------------------------------------------------------------------------------


def test_file_errors_name_the_file_and_the_line_of_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("training:\n  lr_rate: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == (f"{path}:2: unknown key 'training.lr_rate'; "
                               f"did you mean 'training.lr'?")

    path.write_text("# a comment\ntraining:\n  lr: 0.1\n\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:5: training\.epochs: 0 is out of range"):
        load_config(str(path))
    path.write_text("model:\n  hidden:\n    - 64\n    - size: -3\n")  # a list item's key
    with pytest.raises(ConfigError, match=r"bad\.yaml:4: model\.hidden\.1\.size: -3 is out of range"):
        load_config(str(path))
    path.write_text("training:\n  lr: 0.1\n")  # an error in an override names the --set, no line
    with pytest.raises(ConfigError, match=r"^--set training\.epochs=0: training\.epochs"):
        load_config(str(path), ["training.epochs=0"])
    # of two keys a rule names, the line of the one the file sets, not the section of the other
    path.write_text("data:\n  synthetic:\n    n_train: 100\n\n    n_labels: 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:5: data\.synthetic\.labels_per_sample: max 3 is larger"):
        load_config(str(path))
    # an alias that holds itself is an unknown key's line, not a walk without end
    path.write_text("a: &x [*x]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:1: unknown key 'a'"):
        load_config(str(path))


def test_data_paths_name_the_config_line_and_where_a_relative_path_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "c.yaml"
    (tmp_path / "configs" / "train.txt").write_text("1 2 2\n0 0:1\n")
    path.write_text("data:\n  train: train.txt\n")  # beside the config, but paths start from the cwd
    cfg = load_config(str(path))
    with pytest.raises(ConfigError) as info:
        validate_paths(cfg, source=str(path))
    assert str(info.value) == (f"{path}:2: data.train: train.txt does not exist (looked for {tmp_path / 'train.txt'}: "
                               "relative paths start from the working directory)")
    overridden = load_config(str(path), ["data.train=elsewhere.txt"])  # not the file's value: no line
    with pytest.raises(ConfigError, match=r"^data\.train: elsewhere\.txt does not exist"):
        validate_paths(overridden, source=str(path))


def test_a_set_that_puts_a_value_where_a_section_is_names_it():
    with pytest.raises(ConfigError, match=r"^--set training=5: 'training' is a section, not a value"):
        load_config({}, ["training=5", "training.threads=1"])


def test_file_yaml_problems(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.yaml"))
    path = tmp_path / "broken.yaml"
    path.write_text("training: [1,\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:2:1: invalid YAML: expected the node content"):
        load_config(str(path))
    path.write_text("training:\n  epochs: [1\n  lr: 0.1\n")  # found a line after the [ that is not closed
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == (f"{path}:3:5: invalid YAML: expected ',' or ']', but got ':' "
                               "(while parsing a flow sequence at line 2)")
    path.write_text("training:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:3:3: invalid YAML: found duplicate key 'lr'"):
        load_config(str(path))
    path.write_bytes(b"a: 1\n\x00\n")  # one line, without PyYAML's second (a position in "<unicode string>")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: invalid YAML: unacceptable character #x0000: special characters are not allowed"
    with pytest.raises(ConfigError) as info:
        load_config({}, ["model.hidden=[128"])
    assert str(info.value) == ("--set model.hidden=[128: cannot parse value '[128': expected ',' or ']', but got "
                               "'<stream end>'; while parsing a flow sequence")
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(str(path))
    path.write_text("# nothing but a comment\n")
    assert load_config(str(path)) == Config()


def test_yaml_exponent_floats_are_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 1e-4\n  eps: 1E-8\n")
    cfg = load_config(str(path))
    assert cfg.training.lr == 1e-4 and cfg.training.eps == 1e-8


# --- round trips ----------------------------------------------------------------------------------


def _rich_config():
    return config_from_dict({
        "data": {"train": "a/train.txt", "test": "a/test.txt", "format": "xc",
                 "cache_dir": "/tmp/c", "synthetic": {"labels_per_sample": [2, 5]}},
        "model": {"hidden": [300, {"size": 40, "selection": {
            "mode": "lsh", "budget": 16, "min_active": 4, "inference": "lsh",
            "lsh": {"family": "srp", "k": "auto", "l": 7, "policy": "threshold", "threshold": 3,
                    "rebuild": {"max_interval": 400, "drift_threshold": 0.25}}}}],
            "output": {"selection": {"mode": "random", "budget": 77}},
            "loss": "bce", "init": "he"},
        "training": {"lr": 3, "threads": 4, "max_steps": 1000, "deterministic": True,
                     "on_nan": "rollback"},
        "eval": {"every": 100, "subset": None, "k": [1, 2, 100]},
        "output": {"run_dir": "runs/x", "checkpoint_every": 0},
    })


@pytest.mark.parametrize("cfg", [Config(), _rich_config()], ids=["defaults", "rich"])
def test_round_trip_dict(cfg):
    d = config_to_dict(cfg)
    assert isinstance(d["model"]["hidden"], list) and isinstance(d["eval"]["k"], list)
    cfg2 = config_from_dict(d)
    assert cfg2 == cfg
    assert config_to_dict(cfg2) == d


@pytest.mark.parametrize("cfg", [Config(), _rich_config()], ids=["defaults", "rich"])
def test_round_trip_yaml(cfg, tmp_path):
    path = tmp_path / "sub" / "dumped.yaml"
    dump_config(cfg, path)
    assert yaml.safe_load(path.read_text()) == config_to_dict(cfg)
    assert load_config(str(path)) == cfg


def test_validate_config_catches_replace():
    cfg = Config()
    bad = cfg.model_copy(update={"training": cfg.training.model_copy(update={"lr": -1.0})})
    with pytest.raises(ConfigError, match="training.lr"):
        validate_config(bad)
    assert load_config(cfg, ["training.lr=0.5"]).training.lr == 0.5


# --- shipped configs ------------------------------------------------------------------------------


def test_configs_dir_not_empty():
    names = {p.name for p in CONFIGS}
    assert {"quickstart.yaml", "bibtex.yaml", "delicious.yaml", "mnist.yaml", "amazon670k.yaml",
            "delicious200k.yaml", "amazon670k-synthetic.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_loads(path):
    text = path.read_text()
    assert text.startswith("#"), "each shipped config starts with a header comment"
    cfg = load_config(str(path))
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert cfg.output.run_dir.startswith("runs/")


def test_shipped_config_shapes():
    quick = load_config(str(REPO / "configs" / "quickstart.yaml"))
    assert quick.data.train is None and quick.model.output.selection.mode == "lsh"
    assert quick.output.run_dir == "runs/quickstart"
    mnist = load_config(str(REPO / "configs" / "mnist.yaml"))
    assert [h.size for h in mnist.model.hidden] == [1024, 1024]
    assert all(h.selection.mode == "lsh" for h in mnist.model.hidden)
    amazon = load_config(str(REPO / "configs" / "amazon670k.yaml"))
    assert amazon.model.output.selection.mode == "lsh" and [h.size for h in amazon.model.hidden] == [128]
    assert amazon.training.batch_size == 128
    synth = load_config(str(REPO / "configs" / "amazon670k-synthetic.yaml")).data.synthetic
    assert (synth.n_features, synth.n_labels) == (135909, 670091)


def test_limits_come_from_constants():
    import ast

    from slidepy import config, constants
    assert config.MAX_RANGE_POW == constants.MAX_RANGE_POW == 24
    tree = ast.parse((REPO / "slidepy" / "constants.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], \
        "constants.py imports nothing, so every module can use it"


def test_a_home_directory_in_a_path_is_expanded_as_a_shell_would(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config({"data": {"train": "~/train.txt", "test": "~/test.txt", "labels": "~/labels.txt",
                                "cache_dir": "~/cache"}, "output": {"run_dir": "~/runs/a"}})
    d = cfg.data
    assert (d.train, d.test, d.labels, d.cache_dir, cfg.output.run_dir) == tuple(
        str(tmp_path / name) for name in ("train.txt", "test.txt", "labels.txt", "cache", "runs/a"))
    assert load_config({"data": {"train": "data/~x.txt"}}).data.train == "data/~x.txt"  # only a leading ~
