"""Memory estimate of a training run, checked before any work starts.

A config that cannot fit (a 670K-label layer with a wide hidden layer, L = 512 tables of 2^20
buckets, ...) should be refused in a second with numbers, not die an hour in with the OOM killer.
The estimate adds the resident parts: parameters with their gradients and Adam moments, LSH
tables with the per-neuron code buffer, per-thread scratch, the output layer's gradient records and
batch products (at their largest union), the neighbours' bank, and the parsed dataset. The array
sizes are not re-derived here: they come from the shape functions the allocators themselves use.
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field

import numba

from .errors import ConfigError
from .lsh import index_layout
from .network import (MODE_ALL, MODE_CODES, MODE_LSH, SPEC_BUDGET, SPEC_CAPACITY, SPEC_INFER_MODE, SPEC_MODE, layer_sizes,
                      make_spec, nbytes, output_record_shapes, param_shapes, scratch_capacities, scratch_shapes)
from .scoring import BLOCK_FLOATS
from .union import union_step_shapes

# Parsed CSR bytes per byte of XC text: a token "12345:0.5 " (~10 bytes) becomes 8 bytes of
# index + value; .gz files are estimated from their uncompressed size.
PARSED_BYTES_PER_TEXT_BYTE = 1.0
# Headroom for the interpreter, numba's compiled code and transient arrays.
BASE_OVERHEAD = 400 * 2**20
# Exact evaluation scores a block of samples against every output neuron at once (engine.py's
# BLAS path): the (block, N) float32 logits, their negation and argpartition's index array.
EVAL_BLOCK = 64
EVAL_COPIES = 3


@dataclass
class MemoryEstimate:
    parts: dict = field(default_factory=dict)  # name -> bytes
    available: int | None = None

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def report(self) -> str:
        lines = ["memory estimate:"]
        if not self.parts:  # no dimensions to count from: say so rather than print a total of 0
            lines.append("  unknown: a dry run reads the data's dimensions from an XC header alone, and the "
                         "training file has none or is not at hand")
        width = max(len(name) for name in [*self.parts, "available on this machine"])
        for name, size in self.parts.items():
            lines.append(f"  {name:<{width}} {size / 2**20:>10,.1f} MiB")
        if self.parts:
            lines.append(f"  {'total':<{width}} {self.total / 2**20:>10,.1f} MiB")
        if self.available is not None:
            lines.append(f"  {'available on this machine':<{width}} {self.available / 2**20:>10,.1f} MiB")
        return "\n".join(lines)


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None where that file does not exist)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _header_dims(path: str) -> tuple[int, int, int] | None:
    """(n_samples, n_features, n_labels) from an XC header, or None (libsvm or unreadable)."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            parts = f.readline().split()
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            return int(parts[0]), int(parts[1]), int(parts[2])
    except (OSError, ValueError, EOFError):  # ValueError: undecodable text, a NUL in the path
        return None
    return None


def _text_size(path: str) -> int:
    try:
        size = os.path.getsize(path)
    except (OSError, ValueError):
        return 0
    return size * 4 if path.endswith(".gz") else size  # XC text compresses about 4x


def estimate_for_config(cfg, threads: int | None = None, train=None) -> MemoryEstimate:
    """Estimate the peak resident memory of training `cfg` (data dimensions from `train`, a loaded
    Dataset, else read from the train file's header, or the synthetic spec). Array sizes come from
    the allocators' own shape functions (network.param_shapes / scratch_shapes, lsh.index_layout),
    applied to the per-layer spec the engine would build; nothing is allocated."""
    from .config import layer_selections
    from .model import lsh_options

    d = cfg.data
    if d.train is None:
        s = d.synthetic
        n_features, n_labels = s.n_features, s.n_labels
        data_bytes = (s.n_train + s.n_test) * (s.nnz_per_sample * 8 + s.labels_per_sample[1] * 4 + 16)
        max_labels = s.labels_per_sample[1]
        n_train = s.n_train
    else:
        dims = _header_dims(d.train) if train is None else (train.n_samples, train.n_features, train.n_labels)
        if dims is None:
            return MemoryEstimate({}, available_memory())
        n_train, n_features, n_labels = dims
        data_bytes = int((_text_size(d.train) + (_text_size(d.test) if d.test else 0)) * PARSED_BYTES_PER_TEXT_BYTE)
        max_labels = 256
    threads = threads or cfg.training.threads or numba.config.NUMBA_NUM_THREADS
    if cfg.training.deterministic:
        threads = 1
    sizes = layer_sizes(n_features, [h.size for h in cfg.model.hidden], n_labels)
    selections = layer_selections(cfg)
    spec = _layer_spec(sizes, selections, max_labels)
    hash_shapes = [(0, 0, 0, 0)] * len(sizes)
    tables = 0
    for i, sel in enumerate(selections):
        if MODE_LSH not in (spec[i, SPEC_MODE], spec[i, SPEC_INFER_MODE]):
            continue
        (dim, n), lsh = sizes[i], sel.lsh
        hash_shapes[i], index_bytes = index_layout(lsh_options(lsh), dim, n, int(spec[i, SPEC_BUDGET]))
        tables += index_bytes
        if i == 0:  # layer 0 is transposed into a temporary (N, D) copy to hash its rows
            tables += 4 * dim * n
    # The engine keeps one scratch set for training and one for inference, each for T chunks.
    scratch = sum(nbytes(shapes) for training in (True, False)
                  for shapes in scratch_shapes(spec, threads, scratch_capacities(spec, training), hash_shapes))
    # Engine.records_output: with Adam over a dense last hidden layer, the output layer's gradient
    # of a batch is held as records (network.OutputRecords).
    last = len(sizes) - 1
    # Steps whose batch shares its output neurons run that layer as products over their union
    # (union.py; the same condition), whose matrices are the step's largest temporaries.
    records = products = 0
    if cfg.training.optimizer == "adam" and last >= 1 and spec[last - 1, SPEC_MODE] == MODE_ALL:
        batch, capacity = cfg.training.batch_size, spec[last, SPEC_CAPACITY]
        records = nbytes(output_record_shapes(batch, capacity, *sizes[last]))
        products = nbytes(union_step_shapes(batch, capacity, max_labels, sizes[last][1], sizes[last][0]))
    parts = {"parameters + gradients + optimizer": sum(nbytes(s) for s in param_shapes(sizes, cfg.training.optimizer)),
             "LSH tables + code buffers": tables,
             "per-thread scratch": scratch,
             "output gradient records": records,
             "output products (a step's union)": products,
             "exact evaluation block": EVAL_BLOCK * n_labels * 4 * EVAL_COPIES,
             "neighbour bank": _bank_bytes(cfg.model.neighbours, n_train, sizes[last][0], n_features, train),
             "dataset (parsed)": data_bytes,
             "interpreter, compiled code, transients": BASE_OVERHEAD}
    return MemoryEstimate(parts, available_memory())


def _bank_bytes(neighbours, n_train: int, width: int, n_features: int, train=None) -> int:
    """model.neighbours' bank: the bank samples' last-hidden vectors (but in the input space), a
    block's similarities, and in the input space or auto the input rows' postings, 8 bytes a
    non-zero (neighbours.input_postings; counted where the training set is at hand)."""
    if neighbours.weight <= 0:
        return 0
    samples = min(n_train, neighbours.bank_samples or n_train)
    vectors = samples * width * 4 if neighbours.space != "input" else 0
    postings = 0
    if neighbours.space != "hidden" and train is not None:
        postings = 8 * (math.ceil(train.nnz * samples / max(1, n_train)) + n_features + 1)
    return vectors + BLOCK_FLOATS * 4 + postings


def _layer_spec(sizes, selections, max_labels: int):
    """The engine's per-layer spec table for these selections (see Engine.__post_init__)."""
    modes = [MODE_CODES[s.mode] for s in selections]
    infer = [MODE_ALL if s.inference == "exact" or s.mode != "lsh" else MODE_LSH for s in selections]
    return make_spec(sizes, modes, infer, [s.budget for s in selections], [s.min_active for s in selections],
                     max_labels)


def check_memory(estimate: MemoryEstimate) -> None:
    """Refuse a run whose estimate exceeds the memory available now."""
    if estimate.available is not None and estimate.total > estimate.available:
        raise ConfigError("this config needs more memory than the machine has available; reduce the model, the "
                          "LSH tables (l, range_pow, bucket_capacity) or the threads.\n" + estimate.report())
