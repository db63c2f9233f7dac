"""Import a dense MLP trained elsewhere as a slidepy model, so LSH picks the output neurons at
inference (`slidepy evaluate/predict --lsh`).

    layers = read_mlp("model.pt")               # [(W (out, in) float32, b (out,) float32), ...]
    import_mlp("model.pt", "model.npz", overrides=["model.output.selection.lsh.l=64"])

Accepted files (sparse input -> Linear -> ReLU -> ... -> Linear, the last layer giving one logit
per label; at least one hidden layer). A state_dict or an array file holds no activations: its
layers are read as Linear, ReLU, ..., Linear, and `slidepy import` says so (a network with tanh
or GELU between them would score differently here; save it whole to have it checked):
  * a PyTorch `state_dict` (`torch.save(model.state_dict(), f)`): keys `<name>.weight` /
    `<name>.bias` in layer order, or flat names `w1, b1, w2, b2` (scripts/torch_baseline.py);
  * a whole `nn.Sequential` of Linear and ReLU layers (Dropout and Identity are skipped)
    saved with `torch.save(model, f)`;
  * an `.npz` of weight and bias arrays named `W0, b0, W1, b1, ...` (also `w1`/`weight_1`/
    `layers.0.weight`; numbered names are taken in numeric order, dotted names in file order).
Weights are taken in PyTorch's (out, in) layout; an array whose shape only fits transposed,
(in, out), is transposed (as the EmbeddingBag table `w1` of torch_baseline, (n_features,
hidden)); a square matrix is read as (out, in) unless `layout="in_out"`.

A model file from elsewhere never runs code here: PyTorch files are read with
`torch.load(..., weights_only=True)` (a whole `nn.Sequential` is allowed only through
`torch.serialization.safe_globals` for the Sequential, Linear, ReLU, Dropout and Identity
classes), NumPy files with `allow_pickle=False`. A file that would need to unpickle anything
else is refused with a SlidepyError. PyTorch support needs the `torch` extra; without torch, a
PyTorch file gets a message saying what to install.

slidepy stores layer 0 input-major (F, N) and the other layers neuron-major (N, D)
(network.py); the imported model is saved with the output layer in `selection.mode: lsh`,
`inference: exact` (so `--lsh` switches to LSH scoring), the k-means cluster index with the
automatic recipe's budget (4 sqrt(N) neurons), and SGD as the optimizer (no moment arrays in the
file), all of which `--set` overrides.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile

import numpy as np

from .errors import SlidepyError

_NUMBERED = re.compile(r"^(?P<kind>w|weight|weights|b|bias|biases)[_.]?(?P<num>\d+)$", re.IGNORECASE)
_DOTTED = re.compile(r"^(?P<prefix>.+)\.(?P<kind>weight|bias)$")
_SKIPPED_MODULES = ("Dropout", "Identity")


class ImportErrorSlidepy(SlidepyError):
    """A model file that cannot be imported (format, safety, architecture)."""


def _need_torch(path):
    try:
        import torch
    except ImportError:
        raise ImportErrorSlidepy(f"{path} is a PyTorch file: reading it needs PyTorch; install it with "
                                 "pip install -e '.[torch]' (or pip install torch), or save the weights "
                                 "as an .npz of arrays") from None
    return torch


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and later: a legacy (non-zip) torch.save file
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")  # torch.load reads safetensors too


def _file_kind(path: str) -> str:
    """"torch" or "npz", from the file's first bytes (a name can mislead: a torch.save file named
    .npz, an .npy named .npz); a file of neither kind is refused here, saying what it is not."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ImportErrorSlidepy(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise ImportErrorSlidepy(f"{path}: empty")
    if head.startswith(_NPY_MAGIC):
        raise ImportErrorSlidepy(f"{path}: a single .npy array, not an .npz of weights and biases "
                                 "(np.savez(path, W0=..., b0=..., W1=..., ...))")
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as zf:
                return "torch" if any(name.endswith("data.pkl") for name in zf.namelist()) else "npz"
        except zipfile.BadZipFile:
            raise ImportErrorSlidepy(f"{path}: a damaged zip archive (.npz or PyTorch file)") from None
    if head.startswith(_PICKLE_MAGIC) or path.endswith(TORCH_SUFFIXES):
        return "torch"  # torch.load says if it is not one
    raise ImportErrorSlidepy(f"{path}: neither a PyTorch file (.pt) nor a NumPy archive (.npz)")


def _load_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:  # a zip archive (_file_kind): an NpzFile
            return {name: z[name] for name in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ImportErrorSlidepy(f"{path}: refused: it holds pickled Python objects, which could run code "
                                     "when loaded; save plain numeric arrays (np.savez)") from None
        raise ImportErrorSlidepy(f"{path}: not a readable .npz file ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ImportErrorSlidepy(f"{path}: cannot read as .npz ({exc})") from None


def _load_torch(path: str):
    torch = _need_torch(path)
    import pickle

    nn = torch.nn
    allowed = [nn.Sequential, nn.Linear, nn.ReLU, nn.Dropout, nn.Identity]
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TorchScript archive")  # refused below, in one line
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(exc).splitlines()]
        # what torch's safe unpickler names when a file asks for a class or function it does not
        # allow ("Unsupported global: ...", "unsupported GLOBAL posix.system whose module ... is blocked")
        culprit = [line for line in lines if "unsupported global" in line.lower()]
        if not culprit:  # an opcode the safe unpickler does not know: bytes that are no pickle at all
            raise ImportErrorSlidepy(f"{path}: not a PyTorch file, or a damaged one (torch.load: "
                                     f"{next((line for line in lines if line), type(exc).__name__)})") from None
        first = culprit[0].split(". Please")[0]
        layer = re.search(r"torch\.nn\.modules\.[\w.]+\.(\w+)", first)
        if layer:  # a harmless layer class, only not one slidepy's network has
            raise ImportErrorSlidepy(f"{path}: the model holds a {layer.group(1)} layer, which is not supported "
                                     f"(only Linear and ReLU, plus {', '.join(_SKIPPED_MODULES)} which are "
                                     "skipped)") from None
        raise ImportErrorSlidepy(f"{path}: refused: loading it would run code or build objects other than "
                                 f"tensors and Linear/ReLU layers (torch.load weights_only=True: {first})") from None
    except Exception as exc:  # noqa: BLE001 - a foreign file: torch's unpickler raises KeyError, IndexError, ...
        if "TorchScript" in str(exc):  # compiled code, not weights: torch's advice (weights_only=False) would run it
            raise ImportErrorSlidepy(f"{path}: a TorchScript archive, which slidepy does not load (it holds code); "
                                     "save the model's weights instead: torch.save(model.state_dict(), path)") from None
        raise ImportErrorSlidepy(f"{path}: not a PyTorch file, or a damaged one (torch.load: "
                                 f"{type(exc).__name__}: {exc})") from None


def _to_numpy(value, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor or parameter
        value = value.detach().cpu().float().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise ImportErrorSlidepy(f"array {name} has dtype {arr.dtype}, not a number type")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _pairs_from_sequential(model) -> list[tuple]:
    """[(weight, bias, name)] of the Linear layers, checking Linear/ReLU alternation."""
    pairs, expect_relu = [], False
    for i, module in enumerate(model):
        kind = type(module).__name__
        if kind in _SKIPPED_MODULES:
            continue
        if kind == "Linear":
            if expect_relu:
                raise ImportErrorSlidepy(f"layer {i}: two Linear layers without a ReLU between them")
            pairs.append((module.weight, module.bias, f"{i}"))
            expect_relu = True
        elif kind == "ReLU":
            if not expect_relu:
                raise ImportErrorSlidepy(f"layer {i}: ReLU not after a Linear layer")
            expect_relu = False
        else:
            raise ImportErrorSlidepy(f"layer {i}: {kind} is not supported (only Linear and ReLU, "
                                     f"plus {', '.join(_SKIPPED_MODULES)} which are skipped)")
    if pairs and not expect_relu:
        raise ImportErrorSlidepy("the model ends with a ReLU: the last layer must be a Linear giving the logits")
    return pairs


def _pairs_from_mapping(state: dict) -> list[tuple]:
    """[(weight, bias or None, name)] from a name -> array mapping, in layer order."""
    numbered: dict[int, dict] = {}
    dotted: dict[str, dict] = {}
    for name, value in state.items():
        if isinstance(value, dict) or hasattr(value, "keys"):
            raise ImportErrorSlidepy(f"{name!r} holds a mapping, not an array (a training checkpoint?): save the "
                                     "model's own state_dict (torch.save(model.state_dict(), path))")
        m = _NUMBERED.match(name)
        if m:
            kind = "weight" if m["kind"].lower().startswith("w") else "bias"
            layer = numbered.setdefault(int(m["num"]), {})
            if kind in layer:
                raise ImportErrorSlidepy(f"{layer[kind][1]!r} and {name!r} both name the {kind} of layer {m['num']}")
            layer[kind] = (value, name)
            continue
        m = _DOTTED.match(name)
        if m:
            dotted.setdefault(m["prefix"], {})[m["kind"]] = (value, name)
            continue
        raise ImportErrorSlidepy(f"array {name!r} is neither a weight nor a bias (names like W0/b0, w1/b1, "
                                 "weight_0/bias_0 or <layer>.weight/<layer>.bias)")
    if numbered and dotted:
        raise ImportErrorSlidepy("mixes numbered (W0, b0) and dotted (<layer>.weight) names")
    groups = [numbered[k] for k in sorted(numbered)] if numbered else list(dotted.values())
    pairs = []
    for group in groups:
        if "weight" not in group:
            raise ImportErrorSlidepy(f"bias {group['bias'][1]!r} has no weight array")
        weight, name = group["weight"]
        bias = group.get("bias", (None, None))[0]
        pairs.append((weight, bias, name))
    return pairs


def _orient(pairs: list[tuple], layout: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W (out, in), b (out,)) float32 per layer, checking that the dimensions chain."""
    layers = []
    for index, (weight, bias, name) in enumerate(pairs):
        w = _to_numpy(weight, name)
        if w.ndim != 2:
            raise ImportErrorSlidepy(f"weight {name!r} has shape {w.shape}, not a matrix")
        b = None if bias is None else _to_numpy(bias, name.replace("weight", "bias"))
        if b is not None and sum(d > 1 for d in b.shape) > 1:  # (n,), (1, n) and (n, 1) are a vector
            raise ImportErrorSlidepy(f"layer {index} ({name!r}): bias of shape {b.shape}, not a vector")
        b = None if b is None else b.reshape(-1)
        prev_out = layers[-1][0].shape[0] if layers else None
        fits_out_in = (b is None or b.shape[0] == w.shape[0]) and (prev_out is None or w.shape[1] == prev_out)
        fits_in_out = (b is None or b.shape[0] == w.shape[1]) and (prev_out is None or w.shape[0] == prev_out)
        if fits_out_in and (layout == "out_in" or not fits_in_out):
            pass
        elif fits_in_out:
            w = np.ascontiguousarray(w.T)
        else:
            want = f"a bias of {b.shape[0]}" if b is not None else ""
            want += (" and " if want else "") + (f"{prev_out} inputs" if prev_out is not None else "")
            raise ImportErrorSlidepy(f"layer {index} ({name!r}): weight shape {w.shape} does not fit {want}")
        if b is None:
            b = np.zeros(w.shape[0], np.float32)
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ImportErrorSlidepy(f"layer {index} ({name!r}) holds NaN or inf")
        layers.append((w, b))
    return layers


def read_mlp(source, layout: str = "out_in") -> list[tuple[np.ndarray, np.ndarray]]:
    """The layers of an MLP as [(W (out, in) float32, b (out,) float32)], input to output.

    `source`: a path (.pt/.pth/.bin PyTorch file, or .npz), an `nn.Sequential`, or a mapping
    name -> array/tensor (a state_dict). See the module docstring for the accepted forms."""
    return _read(source, layout)[0]


def _read(source, layout: str) -> tuple[list[tuple[np.ndarray, np.ndarray]], bool]:
    """(read_mlp's layers, whether the source held its activations): an nn.Sequential names them
    (and is checked to be Linear/ReLU), a state_dict or an array file holds weights alone, read as
    Linear, ReLU, ..., Linear."""
    if layout not in ("out_in", "in_out"):
        raise ValueError(f"layout must be 'out_in' or 'in_out', got {layout!r}")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ImportErrorSlidepy(f"{path}: no such file")
        obj = _load_torch(path) if _file_kind(path) == "torch" else _load_npz(path)
        where = path
    else:
        obj, where = source, type(source).__name__
    try:
        if hasattr(obj, "state_dict") and hasattr(obj, "__iter__") and type(obj).__name__ == "Sequential":
            pairs = _pairs_from_sequential(obj)
        elif isinstance(obj, dict) or hasattr(obj, "items"):  # weights alone: ReLU between them is assumed
            pairs = _pairs_from_mapping(dict(obj.items()))
        else:
            raise ImportErrorSlidepy(f"holds a {type(obj).__name__}, not a state_dict, nn.Sequential or "
                                     "arrays of weights and biases")
        layers = _orient(pairs, layout)
    except ImportErrorSlidepy as exc:
        raise ImportErrorSlidepy(f"{where}: {exc}") from None
    if len(layers) < 2:
        raise ImportErrorSlidepy(f"{where}: {len(layers)} linear layer(s); slidepy needs at least one hidden "
                                 "layer (Linear, ReLU, Linear)")
    return layers, type(obj).__name__ == "Sequential"


def import_config(layers, overrides=()):
    """The slidepy Config of an imported model: hidden sizes from `layers`, the output layer in
    LSH mode (the k-means cluster index, budget as in the automatic recipe) with exact inference
    by default, so `--lsh` at evaluate/predict time picks the sparse path."""
    from .configfile import load_config
    from .recipe import output_budget

    n_labels = layers[-1][0].shape[0]
    tree = {
        "model": {"hidden": [int(w.shape[0]) for w, _ in layers[:-1]],
                  "output": {"selection": {"mode": "lsh", "budget": min(n_labels, output_budget(n_labels)),
                                           "inference": "exact", "lsh": {"family": "kmeans"}}}},
        "training": {"optimizer": "sgd"},
        "output": {"run_dir": "runs/imported"},
    }
    return load_config(tree, list(overrides))


def import_mlp(source, out_path, *, overrides=(), layout: str = "out_in", label_names=None) -> dict:
    """Read an MLP (see `read_mlp`) and write it as a slidepy model file at `out_path`.
    Returns a summary {n_features, hidden, n_labels, family, budget, relu_assumed} (relu_assumed:
    the source held weights alone, so the activations between them were taken to be ReLU)."""
    from .labels import META_KEY as LABEL_NAMES_KEY
    from .model import Model

    layers, named_activations = _read(source, layout)
    cfg = import_config(layers, overrides)
    hidden = [h.size for h in cfg.model.hidden]
    if hidden != [int(w.shape[0]) for w, _ in layers[:-1]]:
        raise ImportErrorSlidepy(f"--set changed model.hidden to {hidden}, but the imported layers have "
                                 f"{[int(w.shape[0]) for w, _ in layers[:-1]]}")
    n_features, n_labels = int(layers[0][0].shape[1]), int(layers[-1][0].shape[0])
    model = Model.build(cfg, n_features, n_labels)
    engine = model.engine
    arrays = {name: np.zeros(shape, dtype) for name, (shape, dtype) in engine.expected_shapes().items()}
    for index, (w, b) in enumerate(layers):
        # slidepy layout (network.py): layer 0 input-major (F, N), the others neuron-major (N, D)
        arrays[f"layer{index}.weights"] = np.ascontiguousarray(w.T if index == 0 else w)
        arrays[f"layer{index}.bias"] = b
    if label_names is not None and len(label_names) != n_labels:  # before any file is written
        raise ImportErrorSlidepy(f"{len(label_names)} label names for {n_labels} output neurons")
    engine.load_state(arrays, {}, source=str(source))  # no LSH state given: tables built from the weights
    model.save(out_path, **({} if label_names is None else {LABEL_NAMES_KEY: [str(n) for n in label_names]}))
    sel = cfg.model.output.selection
    return {"n_features": n_features, "hidden": hidden, "n_labels": n_labels, "family": sel.lsh.family,
            "budget": sel.budget, "relu_assumed": not named_activations}
