"""Ensembles: several networks trained alone, scored together by averaging their label
distributions.

Why: the tree classifiers slidepy competes with get much of their accuracy from averaging a few
trees (Omikuji and Parabel use 3). Networks trained from different seeds make different mistakes on
the long tail of labels in the same way, and the mean of their predicted distributions ranks labels
better than any one of them. Each member is an ordinary model file: trained, resumed and
checkpointed by the usual trainer, so an interrupted ensemble loses at most one member's last
steps.

Scoring is exact: per block of samples, each member's last hidden layer (the kernel), one BLAS
product with its output layer, its loss's probabilities (softmax over all labels, or per-label
sigmoids for bce), summed into one (B, N) block; then the parallel partial top-k. A member with
the neighbours' votes attached (engine.neighbours, model.neighbours) adds its blended scores, its
softmax mixed with the votes of its own bank, as it would predict alone: without them an ensemble
of DebianDeps networks ranked below one network with them.
"""

from __future__ import annotations

import numpy as np

from .neighbours import bank_block, blended_scores
from .scoring import block_rows, check_k, tiled_logits, topk_rows
from .threads import blas_on_all_threads


def _add_probabilities(logits: np.ndarray, loss: str, into: np.ndarray) -> None:
    """into += softmax(logits) row-wise (loss "softmax") or sigmoid(logits) ("bce"), in float32."""
    if loss == "softmax":
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
    else:
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
        logits += 1.0
        np.reciprocal(logits, out=logits)
    into += logits


def ensemble_topk(engines: list, data, rows: np.ndarray | None = None, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Top-k label ids (B, k) int32 and mean probabilities (B, k) float32 of the engines' averaged
    predictions on dataset rows `rows` (default all), each blended with its neighbours' votes where
    it has a bank attached. The engines must share the label count and loss; each scores exactly."""
    if not engines:
        raise ValueError("an ensemble needs at least one engine")
    check_k(k)
    first = engines[0]
    if any(e.n_labels != first.n_labels or e.loss != first.loss for e in engines):
        raise ValueError("ensemble members must have the same labels and loss")
    for engine in engines:  # each reads the features up to its own input layer's width, unchecked
        engine._check_shape(data, labels=False)
    rows = np.arange(data.n_samples, dtype=np.int64) if rows is None else np.ascontiguousarray(rows, np.int64)
    n = first.n_labels
    top_ids = np.full((rows.shape[0], k), -1, np.int32)
    top_vals = np.full((rows.shape[0], k), -np.inf, np.float32)
    block = min([block_rows(n, most=512)] + [bank_block(e.neighbours, n) for e in engines if e.neighbours is not None])
    total = np.zeros((block, n), np.float32)
    hidden = [np.zeros((block, e.sizes[-1][0]), np.float32) for e in engines]
    zero_bias = np.zeros(n, np.float32)
    with blas_on_all_threads():
        for start in range(0, rows.shape[0], block):
            part = rows[start:start + block]
            b = part.shape[0]
            total[:b] = 0.0
            for e, h in zip(engines, hidden):
                e.last_hidden(data, part, h[:b])
                out = e.layers[-1]
                if e.neighbours is not None:
                    total[:b] += blended_scores(h[:b], out.weights, out.bias, e.neighbours, data, part)
                    continue
                logits = tiled_logits(h[:b], out.weights)
                logits += out.bias
                _add_probabilities(logits, first.loss, total[:b])
            topk_rows(total[:b], zero_bias, top_ids[start:start + b], top_vals[start:start + b])
    top_vals /= len(engines)
    return top_ids, top_vals
