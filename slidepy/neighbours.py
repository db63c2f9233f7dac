"""Label votes of a sample's nearest training samples, in the network's own last hidden space,
blended into the output layer's softmax at prediction (`model.neighbours`).

Why. The output layer ranks labels through one row per label, so a label is predicted only as
well as its row learned it, and a rare label's row learned from a handful of steps. The training
samples themselves remember more: a test sample whose hidden vector is close to some training
samples' is likely to share their labels, whatever their rows learned. This is kNN-LM (Khandelwal
et al. 2020) for labels: scores = (1 - weight) softmax(logits) + weight votes, where votes share
out `weight` over the label slots of the k most cosine-similar training samples, each slot in
proportion to its sample's exp(similarity / temperature) (kNN-LM's softmax over neighbours: at
temperature 0.05 a neighbour 0.1 less similar than the nearest counts e^-2 of it, so k can be
generous without far neighbours blurring the votes). A neighbour's share of the votes is thus
that weight times its number of labels: each label it carries is one vote of its own, not a
fraction of one.

Measured on the shipped configs' final networks (whole test split), P@1 / P@5, the network alone ->
the first votes (k 10, each neighbour in proportion to its cosine, weight 0.3) -> these (k 25,
temperature 0.05, weight 0.3): Bibtex 0.6529 / 0.2913 -> 0.6592 / 0.2953 -> 0.6584 / 0.2964,
Delicious 0.6728 / 0.5739 -> 0.6779 / 0.5793 -> 0.6889 / 0.5873, DebianDeps 0.7465 / 0.4036 ->
0.7561 / 0.4107 -> 0.7539 / 0.4130, and at weight 0.7 0.7621 / 0.4135 (seed 1: 0.7436 / 0.4047
-> 0.7606 / 0.4139). How large a share the votes deserve depends on how much the output rows had
to learn from (recipe.votes_weight). The votes alone (weight 1) scored 0.6270, 0.6342 and 0.7584
there (first votes); in tf-idf space instead of the hidden space they scored 0.59-0.65 on
DebianDeps and added 0.2 P@1.

The space. By default "nearest" is cosine in the last hidden space (`space: hidden`), which the
network shapes to its labels. Where output rows learned from one or two samples each, that space
can hold less than the input itself: on a generated long tail (100,000 labels, 1.2 positives a
label, 2 passes) the hidden-space votes alone scored 0.41 P@1 on the test split, the input rows'
cosine 0.65. `space: input` takes the neighbours by the cosine of the input rows (sparse dot
products over the bank's rows, by feature), and `space: auto` picks, at each bank build, the
space whose votes alone give the higher leave-one-out P@1 on LOO_SAMPLES training samples of the
bank (`choose_space`). That figure favours the hidden space, which was trained on those very
samples (Bibtex: 0.90 leave-one-out against 0.63 on test; the input space's 0.62 against 0.59),
so the input space is chosen only where it wins despite that: on the long tail (0.65 against
0.61 leave-one-out), not on Bibtex, Delicious (0.67 against 0.72) or DebianDeps (0.52 against
0.81), whose test figures agree (DebianDeps' votes alone: 0.51 input, 0.76 hidden). On the real sets
the input space was also no use as a third voice: blended on top of the hidden-space votes at
0.1-0.5 it moved DebianDeps' P@1 by at most +0.03 points and Bibtex's by +0.4 (within the noise).

Cost. The bank holds every training sample's unit hidden vector, or a random `bank_samples` of
them (S x D float32: 91 MB for DebianDeps' 44,606 samples at 512 units), built in one inference pass over the training set; each
prediction adds S x D multiply-adds (a BLAS product) to the N x D of exact scoring. Exact scoring
only. The bank is built from the weights of the moment (Model.attach_neighbours: the trainer does
it at each evaluation and keeps the last one's), never kept in checkpoints.

Tiers: `build_bank` / `blended_scores` (Python and BLAS; `blend_topk` ranks them, an ensemble
averages its members', ensemble.py) -> `blend_rows` (parallel over samples) -> `blend_row` (one
sample: softmax_share, scoring.push_topk, add_votes). In the input space: `blend_input` ->
`blend_input_rows` (parallel over thread chunks, each with its own (S,) scratch) ->
`input_near_row` (one sample's nearest bank rows among those its features reach through the
bank's postings by feature), then softmax_share and add_votes; `input_similarities` ->
`input_sims_rows` -> `input_sims_row` give the dense cosines, for checks.

Shapes: B samples scored in a block, D last-hidden width, N labels (output neurons), S samples in
the bank, F input features, k neighbours voting, K labels kept per sample.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from .constants import INTERNAL
from .rng import generator
from .scoring import BLOCK_FLOATS, check_topk_out, push_topk, tiled_logits, topk_rows

BANK_SAMPLE_STREAM = 0x424E4B  # "BNK": the random stream that picks a sampled bank's rows (rng.py)
LOO_STREAM = 0x4C4F4F  # "LOO": the one that picks the training samples `choose_space` holds out
LOO_SAMPLES = 1000  # held-out samples behind space "auto"'s choice (P@1's standard error about 0.015)
SPACES = ("hidden", "input")


class InputPostings(NamedTuple):
    """The bank samples' input rows scaled to unit L2 norm, by feature: the transpose of their CSR,
    so that a sample's dot products with every bank row touch only the features it has."""

    indptr: np.ndarray  # (F + 1,) int64
    rows: np.ndarray  # int32 the bank row of each entry
    values: np.ndarray  # float32 its value in that unit row
    n_rows: int  # S, the bank rows (the last may have no feature)


class NeighbourBank(NamedTuple):
    """The training samples a prediction looks up, and how their votes count."""

    vectors: np.ndarray  # (S, D) float32 unit last-hidden vectors (zero rows stay zero); (S, 0) in the input space
    y_indptr: np.ndarray  # (S + 1,) int64 their labels, CSR
    y_indices: np.ndarray  # int32
    k: int  # neighbours per prediction
    weight: float  # share of the blended score the votes hold
    temperature: float  # a neighbour's vote counts exp(similarity / temperature)
    space: str = "hidden"  # where similarity is measured: "hidden" (vectors) or "input" (postings)
    postings: InputPostings | None = None  # the input space's bank rows
    # space "auto": each space's leave-one-out P@1 that chose it (choose_space), else empty
    loo_precision: dict | None = None

    @property
    def size(self) -> int:
        """S, the samples in the bank."""
        return self.y_indptr.shape[0] - 1


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm in place (zero rows stay zero); returns x."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)
    norms[norms == 0] = 1.0
    x /= norms[:, None]
    return x


def build_bank(engine, train, k: int, weight: float, temperature: float, block: int = 4096,
               samples: int | None = None, seed: int = 0, space: str = "hidden",
               postings: InputPostings | None = None, input_p1: float | None = None) -> NeighbourBank:
    """The bank of `train`'s samples (or of at most `samples` of them, drawn at random by `seed`:
    the same draw at every evaluation of a run) and their labels, in `space`: "hidden" holds their
    unit last-hidden vectors under the engine's current weights (exact hidden layers, no dropout),
    "input" their unit input rows, and "auto" whichever votes better (choose_space), keeping the
    input rows either way. The input rows and their leave-one-out P@1 do not change with the
    weights: `postings` and `input_p1` from an earlier bank of the same samples, k and temperature
    are taken as they are (Model.attach_neighbours keeps them from one evaluation to the next)."""
    if not 0.0 < weight <= 1.0 or k < 1 or not temperature > 0.0:
        raise ValueError(f"neighbours need k >= 1, 0 < weight <= 1 and temperature > 0, got k {k}, "
                         f"weight {weight}, temperature {temperature}")
    if space not in SPACES + ("auto",):
        raise ValueError(f"neighbours' space must be hidden, input or auto, got {space!r}")
    if samples is not None and samples < train.n_samples:
        rng = generator(seed, BANK_SAMPLE_STREAM)
        train = train.subset(np.sort(rng.choice(train.n_samples, size=samples, replace=False)).astype(np.int64))
    y_indptr, y_indices = unique_labels(train.y_indptr, train.y_indices)
    bank = NeighbourBank(np.zeros((train.n_samples, 0), np.float32), y_indptr, y_indices, int(k), float(weight),
                         float(temperature))
    if space != "input":
        width = engine.sizes[-1][0]
        vectors = np.zeros((train.n_samples, width), np.float32)
        for start in range(0, train.n_samples, block):
            rows = np.arange(start, min(train.n_samples, start + block), dtype=np.int64)
            engine.last_hidden(train, rows, vectors[start:start + rows.shape[0]])
        bank = bank._replace(vectors=unit_rows(vectors))
    if space == "hidden":
        return bank
    if postings is None or postings.n_rows != train.n_samples:
        postings = input_postings(train)
    bank = bank._replace(space="input", postings=postings)
    if space == "auto":
        chosen, precision = choose_space(bank, train, seed, input_p1)
        bank = bank._replace(space=chosen, loo_precision=precision)
        if chosen == "input":  # the hidden vectors are rebuilt at the next bank build anyway
            bank = bank._replace(vectors=np.zeros((train.n_samples, 0), np.float32))
    return bank


@njit(cache=True)
def fill_postings(x_indptr, x_indices, x_values, scale, indptr, rows, values, ends):
    """Transpose the input rows into the postings by feature (indptr (F + 1,) counts each
    feature's entries): each entry's row into rows (nnz,) int32, its value times its row's
    scale (S,) into values (nnz,) float32, a feature repeated in a row summed into one entry
    (rows go in order, so its entries meet at the end of that feature's list). ends (F,) int64
    is left at each feature's end after that merging."""
    for f in range(ends.shape[0]):
        ends[f] = indptr[f]
    for r in range(x_indptr.shape[0] - 1):
        for j in range(x_indptr[r], x_indptr[r + 1]):
            f = x_indices[j]
            p = ends[f]
            v = np.float32(x_values[j] * scale[r])
            if p > indptr[f] and rows[p - 1] == r:
                values[p - 1] += v
            else:
                rows[p] = r
                values[p] = v
                ends[f] = p + 1


def input_postings(train) -> InputPostings:
    """`train`'s input rows scaled to unit L2 norm (Dataset.row_norms: a repeated feature id is
    summed, as the dot products see it), transposed by feature: 8 bytes a non-zero."""
    scale = unit_scales(train)
    indptr = np.zeros(train.n_features + 1, np.int64)
    np.cumsum(np.bincount(train.x_indices, minlength=train.n_features), out=indptr[1:])
    rows = np.empty(train.x_indices.shape[0], np.int32)
    values = np.empty(train.x_indices.shape[0], np.float32)
    ends = np.empty(train.n_features, np.int64)
    fill_postings(train.x_indptr, train.x_indices, train.x_values, scale, indptr, rows, values, ends)
    kept = ends - indptr[:-1]
    if kept.sum() < rows.shape[0]:  # repeated ids merged: close the gaps they left
        keep = np.arange(rows.shape[0]) < np.repeat(ends, np.diff(indptr))
        rows, values = rows[keep], values[keep]
        np.cumsum(kept, out=indptr[1:])
    return InputPostings(indptr, rows, values, int(train.n_samples))


@njit(cache=True, **INTERNAL)
def gather_products(q_indices, q_values, q_scale, p_indptr, p_rows, p_values, acc, listed, touched):
    """acc (S,) float32 += one sample's products with every bank row it shares a feature with: its
    input row (q_indices int32 / q_values float32) times q_scale (1 / its norm, unit_scales; 0 for a
    row without a non-zero) dotted with the postings of each of its features (a repeated id adds
    its values, as in the norm; a feature past the bank's F is in no bank row). With listed (S,)
    bool / touched (S,) int32 (else empty), each bank row reached is flagged and listed once;
    returns how many were listed."""
    track = listed.shape[0] > 0
    n_touched = 0
    n_features = p_indptr.shape[0] - 1
    for j in range(q_indices.shape[0]):
        f = q_indices[j]
        if f >= n_features:
            continue
        v = np.float32(q_values[j] * q_scale)
        for p in range(p_indptr[f], p_indptr[f + 1]):
            r = p_rows[p]
            if track and not listed[r]:
                listed[r] = True
                touched[n_touched] = r
                n_touched += 1
            acc[r] += v * p_values[p]
    return n_touched


@njit(cache=True, **INTERNAL)
def input_sims_row(q_indices, q_values, q_scale, p_indptr, p_rows, p_values, sims, no_flags, no_list):
    """One sample's cosine with every bank row, into sims (S,) float32: gather_products from 0,
    untracked (no_flags / no_list empty)."""
    for s in range(sims.shape[0]):
        sims[s] = 0.0
    gather_products(q_indices, q_values, q_scale, p_indptr, p_rows, p_values, sims, no_flags, no_list)


@njit(parallel=True, cache=True)
def input_sims_rows(x_indptr, x_indices, x_values, rows, scales, p_indptr, p_rows, p_values, sims):
    """input_sims_row for the samples `rows` (B,) int64 of a CSR input, each times its scales (B,),
    into sims (B, S): one sample per thread."""
    no_flags, no_list = np.zeros(0, np.bool_), np.zeros(0, np.int32)
    for i in prange(rows.shape[0]):
        lo, hi = x_indptr[rows[i]], x_indptr[rows[i] + 1]
        input_sims_row(x_indices[lo:hi], x_values[lo:hi], scales[i], p_indptr, p_rows, p_values, sims[i], no_flags,
                       no_list)


def unit_scales(data, rows: np.ndarray | None = None) -> np.ndarray:
    """1 / the L2 norm (Dataset.row_norms) of each input row `rows` (default all) of `data`, 0 for
    a row without a non-zero: (B,) float64. Refuses rows outside the data."""
    if rows is not None and rows.size and (rows.min() < 0 or rows.max() >= data.n_samples):
        raise ValueError(f"rows must lie in [0, {data.n_samples}), got [{rows.min()}, {rows.max()}]")
    norms = data.row_norms(rows)
    return np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)


def input_similarities(postings: InputPostings, data, rows: np.ndarray) -> np.ndarray:
    """The cosine of the input rows `rows` of `data` (a Dataset) with every bank row: (B, S) float32.
    The dense form of what blend_input finds sparsely (the tests check the postings and norms
    through it; analysis scripts use it), not on the prediction path: a dense row and its scan
    cost 3.6 ms a sample at S = 500,000, against 1.3 ms for the rows a sample's features reach."""
    rows = np.ascontiguousarray(rows, np.int64)
    scales = unit_scales(data, rows)
    sims = np.zeros((rows.shape[0], postings.n_rows), np.float32)
    input_sims_rows(data.x_indptr, data.x_indices, data.x_values, rows, scales, postings.indptr, postings.rows,
                    postings.values, sims)
    return sims


@njit(cache=True, **INTERNAL)
def input_near_row(q_indices, q_values, q_scale, exclude, p_indptr, p_rows, p_values, k, near_ids, near_sims,
                   scratch, listed, touched):
    """One sample's k most cosine-similar bank rows in the input space, into near_ids (k,) int32 /
    near_sims (k,) float32 (descending, ties to the lower id, -1 / -inf for none), visiting only
    the bank rows that share a feature with it: its products gather in scratch (S,) float32, the
    rows they reach flagged in listed (S,) bool and listed in touched (S,) int32 (scratch and
    listed all 0 on entry and on return). Bank row `exclude` (a held-out sample's own, or -1) is
    left out. The sample's row times q_scale is unit (gather_products)."""
    for j in range(k):
        near_ids[j] = -1
        near_sims[j] = -np.inf
    n_touched = gather_products(q_indices, q_values, q_scale, p_indptr, p_rows, p_values, scratch, listed, touched)
    for t in range(n_touched):
        r = touched[t]
        if r != exclude:
            push_topk(near_ids, near_sims, k, r, scratch[r])
        scratch[r] = 0.0
        listed[r] = False


@njit(parallel=True, cache=True)
def blend_input_rows(logits, bias, x_indptr, x_indices, x_values, rows, scales, excludes, p_indptr, p_rows,
                     p_values, k, y_indptr, y_indices, weight, temperature, near_ids, near_sims, scratch, listed,
                     touched):
    """blend_row for the samples `rows` (B,) of a CSR input, their neighbours found in the input
    space (input_near_row) instead of a dense similarity row: logits (B, N) in place. The B rows
    are split into T = scratch.shape[0] contiguous chunks, one per thread, each with its own
    scratch / listed / touched row (T, S)."""
    n_chunks = scratch.shape[0]
    for t in prange(n_chunks):
        for i in range(t * rows.shape[0] // n_chunks, (t + 1) * rows.shape[0] // n_chunks):
            lo, hi = x_indptr[rows[i]], x_indptr[rows[i] + 1]
            input_near_row(x_indices[lo:hi], x_values[lo:hi], scales[i], excludes[i], p_indptr, p_rows, p_values, k,
                           near_ids[i], near_sims[i], scratch[t], listed[t], touched[t])
            softmax_share(logits[i], bias, weight)
            add_votes(logits[i], near_ids[i], near_sims[i], k, y_indptr, y_indices, weight, temperature)


def blend_input(logits: np.ndarray, bias: np.ndarray, bank: NeighbourBank, data, rows: np.ndarray,
                weight: float, exclude: np.ndarray | None = None) -> None:
    """logits (B, N) of the samples `rows` of `data` blended in place with the votes of their
    nearest bank rows in the input space, at `weight` (1: the votes alone); `exclude` (B,) a bank
    row each leaves out (-1: none)."""
    rows = np.ascontiguousarray(rows, np.int64)
    scales = unit_scales(data, rows)
    excludes = np.full(rows.shape[0], -1, np.int64) if exclude is None else np.ascontiguousarray(exclude, np.int64)
    b, postings = rows.shape[0], bank.postings
    n_chunks = max(1, min(numba.get_num_threads(), b))
    blend_input_rows(logits, bias, data.x_indptr, data.x_indices, data.x_values, rows, scales, excludes,
                     postings.indptr, postings.rows, postings.values, np.int64(bank.k), bank.y_indptr, bank.y_indices,
                     np.float64(weight), np.float64(bank.temperature), np.empty((b, bank.k), np.int32),
                     np.empty((b, bank.k), np.float32), np.zeros((n_chunks, postings.n_rows), np.float32),
                     np.zeros((n_chunks, postings.n_rows), np.bool_), np.empty((n_chunks, postings.n_rows), np.int32))


def choose_space(bank: NeighbourBank, train, seed: int, input_p1: float | None = None) -> tuple[str, dict]:
    """The space (hidden or input) whose neighbours' votes alone rank a true label first for more
    of LOO_SAMPLES bank samples drawn by `seed`, each voted for by the rest of the bank (itself
    left out); ties keep the hidden space. Returns it and each space's P@1. `bank` holds both
    spaces; `train` is its samples; `input_p1`, the input space's figure where known already."""
    rng = generator(seed, LOO_STREAM)
    held = np.sort(rng.choice(bank.size, size=min(LOO_SAMPLES, bank.size), replace=False)).astype(np.int64)
    n_labels = int(bank.y_indices.max()) + 1 if bank.y_indices.size else 1
    block = bank_block(bank, n_labels)
    hits = {} if input_p1 is None else {"input": float(input_p1)}
    for space in (s for s in SPACES if s not in hits):
        found = 0
        for start in range(0, held.shape[0], block):
            part = held[start:start + block]
            votes = np.zeros((part.shape[0], n_labels), np.float32)
            # weight 1: the votes alone (the zero logits' softmax keeps no share); each left out of its own
            if space == "input":
                blend_input(votes, np.zeros(n_labels, np.float32), bank, train, part, 1.0, exclude=part)
            else:
                sims = tiled_logits(bank.vectors[part], bank.vectors)
                sims[np.arange(part.shape[0]), part] = -np.inf
                blend_rows(votes, np.zeros(n_labels, np.float32), sims, np.int64(bank.k), bank.y_indptr,
                           bank.y_indices, np.float64(1.0), np.float64(bank.temperature),
                           np.empty((part.shape[0], bank.k), np.int32), np.empty((part.shape[0], bank.k), np.float32))
            first = votes.argmax(axis=1)
            for i, row in enumerate(part):
                labels = bank.y_indices[bank.y_indptr[row]:bank.y_indptr[row + 1]]
                found += int(votes[i, first[i]] > 0 and first[i] in labels)
        hits[space] = found / max(1, held.shape[0])
    return ("input" if hits["input"] > hits["hidden"] else "hidden"), {s: hits[s] for s in SPACES}


def unique_labels(y_indptr: np.ndarray, y_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's labels as a set (a label repeated in a line votes once, as it trains once):
    (indptr (B + 1,) int64, indices int32), each row's labels sorted."""
    rows = np.repeat(np.arange(y_indptr.shape[0] - 1, dtype=np.int64), np.diff(y_indptr))
    order = np.lexsort((y_indices, rows))
    rows, labels = rows[order], np.asarray(y_indices, np.int32)[order]
    keep = np.ones(labels.shape[0], bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (labels[1:] != labels[:-1])
    indptr = np.zeros(y_indptr.shape[0], np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=y_indptr.shape[0] - 1), out=indptr[1:])
    return indptr, np.ascontiguousarray(labels[keep])


def bank_block(bank: NeighbourBank, n_labels: int, most: int = 1024) -> int:
    """Samples per prediction block: the block's logits and similarities stay under BLOCK_FLOATS."""
    return int(max(8, min(most, BLOCK_FLOATS // max(1, n_labels, bank.size))))


@njit(cache=True, **INTERNAL)
def softmax_share(logits, bias, weight):
    """logits (N,) becomes (1 - weight) softmax(logits + bias), in place. A logit that is not
    finite (NaN, or +-inf from a diverged label row) counts as -inf: one such row must not turn the
    whole softmax, and with it every blended score, into NaN. A row without a finite logit keeps
    nothing (the votes alone)."""
    peak = -np.inf
    for n in range(logits.shape[0]):
        z = logits[n] + bias[n]
        if not -np.inf < z < np.inf:  # NaN or +-inf
            z = -np.inf
        logits[n] = z
        if z > peak:
            peak = z
    total = 0.0
    for n in range(logits.shape[0]):
        e = np.exp(logits[n] - peak) if peak > -np.inf else 0.0
        logits[n] = e
        total += e
    keep = np.float32((1.0 - weight) / total) if total > 0.0 else np.float32(0.0)
    for n in range(logits.shape[0]):
        logits[n] *= keep


@njit(cache=True, **INTERNAL)
def add_votes(logits, near_ids, near_sims, k, y_indptr, y_indices, weight, temperature):
    """logits (N,) += weight x the votes of the k neighbours in near_ids / near_sims (descending,
    -1 for none; overwritten), each label of each counting exp(similarity / temperature). Only
    neighbours of positive similarity vote; a sample with none gets no votes."""
    nearest = near_sims[0]
    mass = 0.0  # the neighbours' label slots, each weighed exp((sim - nearest) / temperature) <= 1
    for j in range(k):
        s = near_ids[j]
        if s >= 0 and near_sims[j] > 0.0:
            near_sims[j] = np.exp((near_sims[j] - nearest) / temperature)
            mass += near_sims[j] * (y_indptr[s + 1] - y_indptr[s])
        else:
            near_ids[j] = -1
    if mass <= 0.0:
        return
    for j in range(k):
        s = near_ids[j]
        if s >= 0:
            vote = np.float32(weight * near_sims[j] / mass)
            for p in range(y_indptr[s], y_indptr[s + 1]):
                logits[y_indices[p]] += vote


@njit(cache=True, **INTERNAL)
def blend_row(logits, bias, sims, k, y_indptr, y_indices, weight, temperature, near_ids, near_sims):
    """One sample, in place: logits (N,) becomes (1 - weight) softmax(logits + bias) + weight x
    the votes of its k most similar bank samples (sims (S,) float32; near_ids (k,) int32 /
    near_sims (k,) float32 are scratch): softmax_share, then add_votes."""
    softmax_share(logits, bias, weight)
    for j in range(k):
        near_ids[j] = -1
        near_sims[j] = -np.inf
    for s in range(sims.shape[0]):
        push_topk(near_ids, near_sims, k, np.int32(s), sims[s])
    add_votes(logits, near_ids, near_sims, k, y_indptr, y_indices, weight, temperature)


@njit(parallel=True, cache=True)
def blend_rows(logits, bias, sims, k, y_indptr, y_indices, weight, temperature, near_ids, near_sims):
    """blend_row for every row of logits (B, N) / sims (B, S): one row per thread."""
    for i in prange(logits.shape[0]):
        blend_row(logits[i], bias, sims[i], k, y_indptr, y_indices, weight, temperature, near_ids[i], near_sims[i])


def blended_scores(hidden: np.ndarray, weights: np.ndarray, bias: np.ndarray, bank: NeighbourBank,
                   data=None, rows=None) -> np.ndarray:
    """The blended scores (module doc) of a block of samples, the rows `rows` of `data` (needed
    by an input-space bank) whose last-hidden rows are hidden (B, D): (B, N) float32, each row a
    distribution over the labels."""
    b = hidden.shape[0]
    scores = tiled_logits(hidden, weights)
    if bank.space == "input":
        if data is None or rows is None:
            raise ValueError("an input-space neighbour bank needs the samples' input rows (data and rows)")
        blend_input(scores, bias, bank, data, rows, bank.weight)
        return scores
    sims = tiled_logits(unit_rows(hidden.copy()), bank.vectors)
    near_ids = np.empty((b, bank.k), np.int32)
    near_sims = np.empty((b, bank.k), np.float32)
    blend_rows(scores, bias, sims, np.int64(bank.k), bank.y_indptr, bank.y_indices, np.float64(bank.weight),
               np.float64(bank.temperature), near_ids, near_sims)
    return scores


def blend_topk(hidden: np.ndarray, weights: np.ndarray, bias: np.ndarray, bank: NeighbourBank,
               top_ids: np.ndarray, top_vals: np.ndarray, data=None, rows=None) -> None:
    """Top-K of the blended scores for a block of samples (blended_scores' arguments), into
    top_ids (B, K) int32 and top_vals (B, K) float32 (the blended scores, in [0, 1])."""
    check_topk_out(hidden.shape[0], top_ids, top_vals)
    topk_rows(blended_scores(hidden, weights, bias, bank, data, rows), np.zeros(weights.shape[0], np.float32),
              top_ids, top_vals)
