"""Slow reference implementations that the fast kernels are tested against."""


# ======================================================================================
# metrics: slow references for slidepy/metrics.py (pure Python sets, one sample at a time)
# ======================================================================================

import math
import math as _metrics_math

import numpy as _metrics_np


def naive_precision_at_k(top_ids, y_indptr, y_indices, k, ignore_empty=False):
    """Mean P@k: |set(top-k ids >= 0) & set(labels)| / k; empty samples score 0."""
    scores = []
    for i in range(len(top_ids)):
        labels = set(int(x) for x in y_indices[y_indptr[i] : y_indptr[i + 1]])
        if ignore_empty and not labels:
            continue
        preds = set(int(p) for p in top_ids[i][:k] if p >= 0)
        scores.append(len(preds & labels) / k)
    return sum(scores) / len(scores) if scores else 0.0


def naive_ndcg_at_k(top_ids, y_indptr, y_indices, k, ignore_empty=False):
    """Mean nDCG@k; a repeated prediction counts at its first rank only; empty samples score 0."""
    scores = []
    for i in range(len(top_ids)):
        labels = set(int(x) for x in y_indices[y_indptr[i] : y_indptr[i + 1]])
        if ignore_empty and not labels:
            continue
        if not labels:
            scores.append(0.0)
            continue
        row = [int(p) for p in top_ids[i][:k]]
        dcg = 0.0
        for r, p in enumerate(row):
            if p >= 0 and p in labels and p not in row[:r]:
                dcg += 1.0 / _metrics_math.log2(r + 2)
        idcg = sum(1.0 / _metrics_math.log2(r + 2) for r in range(min(k, len(labels))))
        scores.append(dcg / idcg)
    return sum(scores) / len(scores) if scores else 0.0


def naive_topk(scores, k):
    """Top-k ids and values per row: descending score, ties by lower id, -1 / -inf padding."""
    scores = _metrics_np.asarray(scores)
    n_samples, n_labels = scores.shape
    ids = _metrics_np.full((n_samples, k), -1, dtype=_metrics_np.int32)
    vals = _metrics_np.full((n_samples, k), -_metrics_np.inf, dtype=scores.dtype)
    for i in range(n_samples):
        order = sorted(range(n_labels), key=lambda j: (-float(scores[i, j]), j))[:k]
        ids[i, : len(order)] = order
        vals[i, : len(order)] = scores[i, order]
    return ids, vals


# ======================================================================================
# data: slow reference parser for slidepy/data.py + slidepy/parse.py (pure Python, re, float())
# ======================================================================================

import re as _data_re

_DATA_LABELS = _data_re.compile(r"[0-9]+(,[0-9]+)*")
_DATA_FEATURE = _data_re.compile(r"([0-9]+):([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)")
_DATA_F32_MAX = float(_metrics_np.finfo(_metrics_np.float32).max)


class NaiveParseError(ValueError):
    """A bad line: `.line` is its 1-based line number (XC header = line 1)."""

    def __init__(self, line, reason):
        super().__init__(f"line {line}: {reason}")
        self.line = line


def naive_parse(text, *, format, index_base=None, n_features=None, n_labels=None):
    """Parse XC / LIBSVM text one line at a time with regexes and Python float().

    `format` "xc" or "libsvm" (no auto). Every line after the XC header is a sample; a final
    newline does not start another. Labels: the first token unless the line starts with
    whitespace (space, tab, CR) or that token holds a colon (a feature). Raises NaiveParseError at the first bad line. Returns a dict
    of the Dataset fields (numpy arrays with the Dataset dtypes, n_features, n_labels).
    """
    np = _metrics_np
    if index_base is None:
        index_base = 0 if format == "xc" else 1
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.removesuffix("\r") for ln in lines]
    first = 0
    if format == "xc":
        while first < len(lines) and not lines[first].strip():
            first += 1
        if first == len(lines):
            raise NaiveParseError(1, "empty file")
        n_rows, n_features, n_labels = (int(t) for t in lines[first].split())
        first += 1
        if len(lines) - first != n_rows:
            raise NaiveParseError(first + min(n_rows, len(lines) - first) + 1, "line count")
    xp, xi, xv, yp, yi = [0], [], [], [0], []
    max_f, max_l = -1, -1
    for k in range(first, len(lines)):
        line = lines[k]
        lineno = k + 1
        tokens = [t for t in _data_re.split(r"[ \t\r]+", line) if t]
        if line and line[0] not in " \t\r" and ":" not in tokens[0]:
            label_tok, feature_toks = tokens[0], tokens[1:]
            if not _DATA_LABELS.fullmatch(label_tok):
                raise NaiveParseError(lineno, f"bad labels {label_tok!r}")
            labels = [int(t) for t in label_tok.split(",")]
        else:
            labels, feature_toks = [], tokens
        for lab in labels:
            if n_labels is not None and lab >= n_labels:
                raise NaiveParseError(lineno, f"label {lab} out of range")
        feats = []
        for tok in feature_toks:
            m = _DATA_FEATURE.fullmatch(tok)
            if not m:
                raise NaiveParseError(lineno, f"bad feature {tok!r}")
            fid = int(m.group(1)) - index_base
            val = float(m.group(2))
            if fid < 0 or (n_features is not None and fid >= n_features):
                raise NaiveParseError(lineno, f"feature id {fid} out of range")
            with np.errstate(over="ignore"):
                finite32 = abs(float(np.float32(val))) <= _DATA_F32_MAX
            if not finite32:
                raise NaiveParseError(lineno, f"value {val} overflows float32")
            feats.append((fid, val))
        for fid, val in feats:
            xi.append(fid)
            xv.append(val)
            max_f = max(max_f, fid)
        yi.extend(labels)
        max_l = max([max_l] + labels)
        xp.append(len(xi))
        yp.append(len(yi))
    return {
        "x_indptr": np.array(xp, dtype=np.int64),
        "x_indices": np.array(xi, dtype=np.int32),
        "x_values": np.array(xv, dtype=np.float64).astype(np.float32),
        "y_indptr": np.array(yp, dtype=np.int64),
        "y_indices": np.array(yi, dtype=np.int32),
        "n_features": n_features if n_features is not None else max_f + 1,
        "n_labels": n_labels if n_labels is not None else max_l + 1,
    }


def naive_subset(ds_fields, rows):
    """Row gather of CSR dict/Dataset fields by a Python loop: dict of the five arrays."""
    np = _metrics_np
    get = ds_fields.__getitem__ if isinstance(ds_fields, dict) else lambda n: getattr(ds_fields, n)
    out = {}
    for side, names in (("x", ("x_indices", "x_values")), ("y", ("y_indices",))):
        indptr = get(f"{side}_indptr")
        new_indptr = [0]
        parts = {n: [] for n in names}
        for r in rows:
            a, b = int(indptr[r]), int(indptr[r + 1])
            for n in names:
                parts[n].extend(get(n)[a:b].tolist())
            new_indptr.append(new_indptr[-1] + b - a)
        out[f"{side}_indptr"] = np.array(new_indptr, dtype=np.int64)
        for n in names:
            out[n] = np.array(parts[n], dtype=get(n).dtype)
    return out


# ======================================================================================
# LSH: slow references for slidepy/rng.py, slidepy/hashing.py and slidepy/tables.py
# (pure Python integers for the 64-bit mixing, dense NumPy vectors for the hash families,
# Python lists and sets for the tables). They follow the definitions in the module
# docstrings, written out the obvious way.
# ======================================================================================

import numpy as _lsh_np

_LSH_M64 = (1 << 64) - 1
_LSH_FOLD_SEED = 0x6A09E667F3BCC909
_LSH_NONZERO = 0x853C49E6748FEA9B
_LSH_DENSIFY_ATTEMPTS = 32
_LSH_OFFSET_SALT = 0x5851F42D4C957F2D


def naive_splitmix64(x):
    z = (int(x) + 0x9E3779B97F4A7C15) & _LSH_M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _LSH_M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _LSH_M64
    return z ^ (z >> 31)


def naive_mix_seed(a, b):
    return naive_splitmix64(naive_splitmix64(int(a) & _LSH_M64) ^ (int(b) & _LSH_M64))


def naive_seed_state(seed):
    s = naive_splitmix64(int(seed) & _LSH_M64)
    return s if s != 0 else _LSH_NONZERO


def naive_xorshift_next(x):
    """One xorshift64* step: returns (new_state, output)."""
    x ^= x >> 12
    x ^= (x << 25) & _LSH_M64
    x ^= x >> 27
    return x, (x * 0x2545F4914F6CDD1D) & _LSH_M64


def naive_randint(x, n):
    """Returns (new_state, r in [0, n)) like rng.randint."""
    x, out = naive_xorshift_next(x)
    r = int(float(out >> 11) * (1.0 / 9007199254740992.0) * n)
    return x, min(r, n - 1)


def naive_combine_pieces(pieces, k, l, bits, range_pow):
    """Table codes from K pieces each: concatenation if K*bits <= range_pow, else fold."""
    mask = (1 << bits) - 1
    codes = _lsh_np.zeros(l, _lsh_np.int32)
    for t in range(l):
        part = [int(p) & mask for p in pieces[t * k:(t + 1) * k]]
        if k * bits <= range_pow:
            acc = 0
            for p in part:
                acc = (acc << bits) | p
            codes[t] = acc
        else:
            acc = _LSH_FOLD_SEED
            for p in part:
                acc = naive_splitmix64(acc ^ p)
            codes[t] = acc >> (64 - range_pow)
    return codes


def _lsh_spec(params):
    fam, dim, k, l, b, bits, n_hashes, n_perms = (int(v) for v in params.spec)
    return fam, dim, k, l, b, bits, n_hashes, n_perms


def naive_srp_pieces(params, ids, vals):
    """Dense (H, D) sign matrix; float32 sums accumulated entry by entry; bit = sum > 0."""
    _, dim, _, _, _, _, n_hashes, _ = _lsh_spec(params)
    proj = _lsh_np.zeros((n_hashes, dim), _lsh_np.float32)
    for d in range(dim):
        for q in range(params.proj_indptr[d], params.proj_indptr[d + 1]):
            proj[params.proj_hash[q], d] = params.proj_sign[q]
    acc = _lsh_np.zeros(n_hashes, _lsh_np.float32)
    for i, v in zip(ids, vals):
        acc += _lsh_np.float32(v) * proj[:, int(i)]
    return (acc > 0).astype(_lsh_np.int64)


def _lsh_slot_values(params, ids, vals, dense):
    """(S,) slot values: max over the (dim, perm) positions mapped to the slot.

    dense=True: missing dims are zeros (plain WTA). dense=False: only non-zero values count and
    a slot with none is -inf (DWTA)."""
    _, dim, _, _, b, _, n_hashes, n_perms = _lsh_spec(params)
    x = _lsh_np.zeros(dim, _lsh_np.float32)
    present = _lsh_np.zeros(dim, bool)
    x[_lsh_np.asarray(ids, _lsh_np.int64)] = vals
    present[_lsh_np.asarray(ids, _lsh_np.int64)] = _lsh_np.asarray(vals) != 0
    slot = _lsh_np.full(n_hashes * b, -_lsh_np.inf, _lsh_np.float32)
    for d in range(dim):
        if not dense and not present[d]:
            continue
        for p in range(n_perms):
            c = params.dim_map[d, p]
            if c >= 0:
                slot[c] = max(slot[c], x[d])
    return slot


def naive_wta_pieces(params, ids, vals):
    """Argmax slot of each bin of the dense vector (missing dims = 0), first index on ties."""
    b, n_hashes = int(params.spec[4]), int(params.spec[6])
    slot = _lsh_slot_values(params, ids, vals, dense=True)
    return _lsh_np.array([int(_lsh_np.argmax(slot[h * b:(h + 1) * b])) for h in range(n_hashes)])


def naive_dwta_pieces(params, ids, vals):
    """DWTA pieces, or None when the input has no non-zero value (codes are then all 0)."""
    b, n_hashes = int(params.spec[4]), int(params.spec[6])
    slot = _lsh_slot_values(params, ids, vals, dense=False)
    nonempty = [bool(_lsh_np.any(slot[h * b:(h + 1) * b] > -_lsh_np.inf)) for h in range(n_hashes)]
    if not any(nonempty):
        return None
    raw = [int(_lsh_np.argmax(slot[h * b:(h + 1) * b])) for h in range(n_hashes)]
    key = int(params.dens_key[0]) | 1
    pieces = []
    for h in range(n_hashes):
        donor = h if nonempty[h] else None
        attempt = 1
        while donor is None and attempt <= _LSH_DENSIFY_ATTEMPTS:
            g = ((((key * ((h << 32) + attempt)) & _LSH_M64) >> 32) * n_hashes) >> 32
            if nonempty[g]:
                donor = g
            attempt += 1
        if donor is None:
            donor = next((h + j) % n_hashes for j in range(1, n_hashes + 1) if nonempty[(h + j) % n_hashes])
        if donor == h:
            pieces.append(raw[h])
        else:
            off = naive_splitmix64(key ^ _LSH_OFFSET_SALT ^ (donor << 32) ^ h) >> 40
            pieces.append((raw[donor] + off) % b)
    return _lsh_np.array(pieces)


def naive_minhash_pieces(params, ids, vals):
    """Minima of ((a*id + b) mod 2**64) >> 33 over ids with non-zero value, or None if none."""
    feats = [int(i) for i, v in zip(ids, vals) if v != 0]
    if not feats:
        return None
    return _lsh_np.array([min(((int(a) * i + int(bb)) & _LSH_M64) >> 33 for i in feats)
                          for a, bb in zip(params.mh_a, params.mh_b)])


def naive_hash_codes(params, ids, vals, range_pow):
    """(L,) int32 codes of one sparse vector, any family."""
    fam, _, k, l, _, bits, _, _ = _lsh_spec(params)
    pieces = {0: naive_srp_pieces, 1: naive_wta_pieces, 2: naive_dwta_pieces,
              3: naive_minhash_pieces}[fam](params, ids, vals)
    if pieces is None:
        return _lsh_np.zeros(l, _lsh_np.int32)
    return naive_combine_pieces(pieces, k, l, bits, range_pow)


def naive_srp_codes(params, ids, vals, range_pow):
    assert int(params.spec[0]) == 0
    return naive_hash_codes(params, ids, vals, range_pow)


def naive_wta_codes(params, ids, vals, range_pow):
    assert int(params.spec[0]) == 1
    return naive_hash_codes(params, ids, vals, range_pow)


def naive_dwta_codes(params, ids, vals, range_pow):
    assert int(params.spec[0]) == 2
    return naive_hash_codes(params, ids, vals, range_pow)


def naive_minhash_codes(params, ids, vals, range_pow):
    assert int(params.spec[0]) == 3
    return naive_hash_codes(params, ids, vals, range_pow)


def naive_build_tables(codes, order, insert_policy, seed, n_tables, n_buckets, capacity):
    """Tables as lists: returns (buckets (L, R, C) int32 with -1, counts (L, R) int32)."""
    buckets = _lsh_np.full((n_tables, n_buckets, capacity), -1, _lsh_np.int32)
    counts = _lsh_np.zeros((n_tables, n_buckets), _lsh_np.int32)
    for t in range(n_tables):
        state = naive_seed_state(naive_mix_seed(seed, t))
        for item in order:
            code = int(codes[item, t])
            cnt = int(counts[t, code])
            if insert_policy == 0:
                buckets[t, code, cnt % capacity] = item
            elif cnt < capacity:
                buckets[t, code, cnt] = item
            else:
                state, j = naive_randint(state, cnt + 1)
                if j < capacity:
                    buckets[t, code, j] = item
            counts[t, code] = cnt + 1
    return buckets, counts


def naive_query_union(buckets, counts, codes, skip=()):
    """(ids in probe order without repeats, {id: number of tables returning it}); ids in
    `skip` (forced ids) are left out."""
    order, hits = [], {}
    skip = set(int(s) for s in skip)
    for t in range(buckets.shape[0]):
        code = int(codes[t])
        for s in range(min(int(counts[t, code]), buckets.shape[2])):
            item = int(buckets[t, code, s])
            if item in skip:
                continue
            if item not in hits:
                order.append(item)
                hits[item] = 0
            hits[item] += 1
    return order, hits


def naive_select_candidates(policy, buckets, counts, codes, forced, max_out, min_hits):
    """forced ids followed by the chosen candidates (policy 0 vanilla, 1 top-k, 2 threshold)."""
    out = list(forced)
    budget = max(0, max_out - len(out))
    order, hits = naive_query_union(buckets, counts, codes, skip=forced)
    if policy == 0:
        chosen = order[:budget]
    elif policy == 1:
        pos = {item: p for p, item in enumerate(order)}
        best = sorted(order, key=lambda item: (-hits[item], pos[item]))[:budget]
        chosen = sorted(best, key=lambda item: pos[item])
    else:
        chosen = [item for item in order if hits[item] >= min_hits][:budget]
    return out + chosen


# ======================================================================================
# MLP reference: slow dense references for slidepy/kernels.py (forward, loss, backward),
# slidepy/selection.py (random active sets) and slidepy/optimizer.py (lazy Adam, SGD).
# Float64 NumPy over a whole batch; parameters in the engine's layout: layer 0 weights
# (F, N) input-major, every other layer (N, D) neuron-major; biases (N,).
# ======================================================================================

import numpy as _mlp_np

_MLP_C1 = 0x9E3779B97F4A7C15
_MLP_C2 = 0xBF58476D1CE4E5B9


def naive_dense_rows(x_indptr, x_indices, x_values, n_features, rows):
    """(len(rows), F) float64 dense inputs; a feature id repeated within a row sums its values."""
    x = _mlp_np.zeros((len(rows), n_features), _mlp_np.float64)
    for b, i in enumerate(rows):
        lo, hi = int(x_indptr[i]), int(x_indptr[i + 1])
        _mlp_np.add.at(x[b], x_indices[lo:hi].astype(_mlp_np.int64), x_values[lo:hi].astype(_mlp_np.float64))
    return x


def naive_unique(ids):
    """The distinct ids of a sequence in first-occurrence order (a Python list of ints)."""
    out = []
    for v in ids:
        if int(v) not in out:
            out.append(int(v))
    return out


def naive_forward(params, x_dense, masks=None):
    """Pre-activations and activations of every layer.

    params: list of (W, b); x_dense (B, F); masks: None or a list (one per layer) of None or
    (B, N_l) bool, the neurons active per sample (an inactive hidden neuron outputs 0).
    Returns (z, h): lists of (B, N_l) float64; hidden h = relu(z) * mask, output h = z.
    """
    n_layers = len(params)
    masks = masks if masks is not None else [None] * n_layers
    h_prev = _mlp_np.asarray(x_dense, _mlp_np.float64)
    zs, hs = [], []
    for l, (w, b) in enumerate(params):
        w = _mlp_np.asarray(w, _mlp_np.float64)
        b = _mlp_np.asarray(b, _mlp_np.float64)
        z = h_prev @ w + b if l == 0 else h_prev @ w.T + b
        if l < n_layers - 1:
            h = _mlp_np.maximum(z, 0.0)
            if masks[l] is not None:
                h = h * masks[l]
        else:
            h = z
        zs.append(z)
        hs.append(h)
        h_prev = h
    return zs, hs


def naive_sample_loss(logits, labels, loss, active=None):
    """Loss of one sample and d loss / d logits (unscaled), over the active outputs only.

    softmax: cross-entropy against the unique labels as a uniform target (1/k each);
    bce: sum over active outputs of -log sigmoid(z) (labels) or -log(1 - sigmoid(z)) (others).
    A sample without labels has loss 0 and zero gradient.
    """
    labels = naive_unique(labels)
    n = logits.shape[0]
    active = _mlp_np.ones(n, bool) if active is None else _mlp_np.asarray(active, bool)
    grad = _mlp_np.zeros(n, _mlp_np.float64)
    if not labels:
        return 0.0, grad
    assert all(active[y] for y in labels), "labels must be in the active set"
    target = _mlp_np.zeros(n, _mlp_np.float64)
    if loss == "softmax":
        target[labels] = 1.0 / len(labels)
        z = logits[active]
        peak = z.max()
        lse = peak + _mlp_np.log(_mlp_np.exp(z - peak).sum())
        value = -float((target[labels] * (logits[labels] - lse)).sum())
        grad[active] = _mlp_np.exp(z - lse) - target[active]
    elif loss == "bce":
        target[labels] = 1.0
        z = logits[active]
        t = target[active]
        softplus = _mlp_np.maximum(z, 0.0) + _mlp_np.log1p(_mlp_np.exp(-_mlp_np.abs(z)))  # -log(1 - s(z))
        value = float((softplus - t * z).sum())
        neg_softplus = _mlp_np.maximum(-z, 0.0) + _mlp_np.log1p(_mlp_np.exp(-_mlp_np.abs(z)))  # -log s(z)
        grad[active] = _mlp_np.exp(-neg_softplus) - t
    else:
        raise ValueError(loss)
    return value, grad


def naive_forward_backward(params, x_dense, labels, loss, *, masks=None, grad_scale=None):
    """Dense MLP (ReLU hidden layers) forward, loss and backward for a batch, in float64.

    params: list of (W, b) in the engine's layout; x_dense (B, F); labels: B sequences of label
    ids (duplicates count once; an empty one is an unlabelled sample: loss 0, no gradient);
    loss "softmax" or "bce"; masks as in naive_forward (the loss runs over the active outputs).
    Every gradient is d/dtheta of grad_scale * sum_b loss_b, grad_scale defaulting to 1/B with
    B counting unlabelled samples too (the engine's convention).
    Returns a dict: logits (B, N_out); sample_loss (B,); loss (mean over labelled samples, 0 if
    none: the engine's StepStats.loss); grads: list of (dW, db) shaped like params; deltas: list
    of (B, N_l) scaled d loss / d pre-activation (0 where inactive or ReLU-dead).
    """
    n_layers = len(params)
    batch = x_dense.shape[0]
    scale = 1.0 / batch if grad_scale is None else float(grad_scale)
    masks = masks if masks is not None else [None] * n_layers
    zs, hs = naive_forward(params, x_dense, masks)
    logits = zs[-1]
    sample_loss = _mlp_np.zeros(batch, _mlp_np.float64)
    delta = _mlp_np.zeros_like(logits)
    for b in range(batch):
        active = None if masks[-1] is None else masks[-1][b]
        sample_loss[b], g = naive_sample_loss(logits[b], labels[b], loss, active)
        delta[b] = scale * g
    deltas = [None] * n_layers
    grads = [None] * n_layers
    for l in range(n_layers - 1, -1, -1):
        w = _mlp_np.asarray(params[l][0], _mlp_np.float64)
        deltas[l] = delta
        h_prev = _mlp_np.asarray(x_dense, _mlp_np.float64) if l == 0 else hs[l - 1]
        dw = h_prev.T @ delta if l == 0 else delta.T @ h_prev
        grads[l] = (dw, delta.sum(axis=0))
        if l > 0:
            delta = (delta @ w) * (zs[l - 1] > 0.0)
            if masks[l - 1] is not None:
                delta = delta * masks[l - 1]
    labelled = _mlp_np.array([len(naive_unique(y)) > 0 for y in labels], bool)
    mean_loss = float(sample_loss[labelled].sum() / labelled.sum()) if labelled.any() else 0.0
    return {"logits": logits, "sample_loss": sample_loss, "loss": mean_loss, "grads": grads, "deltas": deltas}


def naive_touched(feature_rows, labels, deltas, n_features, masks=None):
    """The marks the engine's backward sets (row_touched, bias_touched) for a batch, as bool arrays.

    Only labelled samples count. Layer 0: the weight row of every feature id present in a
    sample's input (even with value 0), and the bias of every *active* neuron (even a ReLU-dead
    one); layer l > 0: the weight row and bias of every neuron whose d loss / d pre-activation is
    non-zero in some sample (a dead or exactly-predicted neuron is skipped).
    feature_rows: B sequences of feature ids; deltas from naive_forward_backward; masks as there.
    Returns a list of (row_touched, bias_touched) per layer.
    """
    labelled = [b for b, y in enumerate(labels) if len(y) > 0]
    out = []
    for l, delta in enumerate(deltas):
        if l == 0:
            rows = _mlp_np.zeros(n_features, bool)
            bias = _mlp_np.zeros(delta.shape[1], bool)
            for b in labelled:
                rows[_mlp_np.asarray(feature_rows[b], _mlp_np.int64)] = True
                bias |= True if masks is None or masks[0] is None else masks[0][b]
        else:
            rows = (delta[labelled] != 0.0).any(axis=0)
            bias = rows.copy()
        out.append((rows, bias))
    return out


def naive_derive_seed(seed, step, sample):
    """rng.derive_seed: splitmix64(seed ^ step * C1 ^ sample * C2), wrapping 64-bit."""
    m = _LSH_M64
    return naive_splitmix64((int(seed) & m) ^ ((int(step) * _MLP_C1) & m) ^ ((int(sample) * _MLP_C2) & m))


def naive_negative_pool(seed, step, n_neurons, size):
    """selection.draw_negative_pool for a step: `size` distinct neurons in draw order from the
    stream derive_seed(seed, step, 2**64 - 1), batch position -1 as a uint64."""
    state = naive_seed_state(naive_derive_seed(seed, step, _LSH_M64))
    out = []
    while len(out) < size:
        state, v = naive_randint(state, n_neurons)
        if v not in out:
            out.append(v)
    return out


def naive_uniform_fill(ids, target, n_neurons, state, pool=()):
    """Append uniform negatives to the list ids until it holds `target`: the pool's ids not in it,
    in order, then draws from the sample's stream; returns the new state."""
    for v in pool:
        if len(ids) >= target:
            break
        if v not in ids:
            ids.append(int(v))
    while len(ids) < target:
        state, v = naive_randint(state, n_neurons)
        if v not in ids:
            ids.append(v)
    return state


def naive_active_sets(seed, step, position, labels, layers, pool=()):
    """The training active sets of one sample, as kernels.select_active draws them.

    layers: per layer (mode, budget, min_active, n_neurons), mode "all" or "random"; a budget
    >= n_neurons means "all" (as network.make_spec decides), min_active is clipped to the budget.
    One xorshift64* stream per sample, seeded from derive_seed(seed, step, position), is shared
    by the layers in order. The output layer's set starts with the unique labels, and its uniform
    draws take the step's shared pool (naive_negative_pool) first; the min_active top-up does not.
    Returns a list of int lists, one per layer (id order as in the kernel's scratch).
    """
    state = naive_seed_state(naive_derive_seed(seed, step, position))
    forced = naive_unique(labels)
    out = []
    last = len(layers) - 1
    for l, (mode, budget, min_active, n) in enumerate(layers):
        budget = min(budget, n)
        if mode == "all" or budget >= n:
            out.append(list(range(n)))
            continue
        ids = list(forced) if l == last else []
        state = naive_uniform_fill(ids, max(budget, len(ids)), n, state, pool if l == last else ())
        state = naive_uniform_fill(ids, min(min_active, budget), n, state)
        out.append(ids)
    return out


def naive_adam_rows(param, grad, m, v, rows, lr, beta1, beta2, eps, step, weight_decay=0.0):
    """Lazy Adam in float64 on the given rows of 2-D arrays (others untouched); returns new
    (param, m, v). Bias correction folded into the step size with the global 1-based step:
    p = (1 - lr * weight_decay) * p - lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
    (decoupled weight decay, AdamW)."""
    param, m, v = (_mlp_np.array(a, _mlp_np.float64) for a in (param, m, v))
    g = _mlp_np.asarray(grad, _mlp_np.float64)[rows]
    lr_t = lr * _mlp_np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
    m[rows] = beta1 * m[rows] + (1.0 - beta1) * g
    v[rows] = beta2 * v[rows] + (1.0 - beta2) * g * g
    param[rows] = (1.0 - lr * weight_decay) * param[rows] - lr_t * m[rows] / (_mlp_np.sqrt(v[rows]) + eps)
    return param, m, v


def naive_dropout_masks(seed, step, labelled, hidden, p):
    """Per hidden layer a (B, N_l) float mask of what kernels.dropout does to a network whose
    every layer is `all` (no selection draws): 1/(1-p) where a neuron is kept, 0 where dropped.
    Each labelled sample's stream (derive_seed(seed, step, position)) gives one uniform per
    hidden neuron, layer by layer, kept when u < 1 - p; unlabelled samples draw nothing."""
    keep = 1.0 - p
    masks = [_mlp_np.zeros((len(labelled), n)) for n in hidden]
    for b, has_labels in enumerate(labelled):
        if not has_labels:
            continue
        state = naive_seed_state(naive_derive_seed(seed, step, b))
        for l, n in enumerate(hidden):
            for a in range(n):
                state, out = naive_xorshift_next(state)
                if float(out >> 11) * (1.0 / 9007199254740992.0) < keep:
                    masks[l][b, a] = 1.0 / keep
    return masks


# ======================================================================================
# clusters: slow references for slidepy/clusters.py (k-means buckets probed by centroid score)
# ======================================================================================


def naive_probe_clusters(centroids, members_per_cluster, query, forced, cap):
    """Active set of a query under a cluster index: the forced ids, then the members of clusters
    in descending order of centroid . [query, 1] (ties to the lower cluster id), each cluster's
    members in stored order, skipping repeats, cut at `cap` ids in all.

    centroids (C, D + 1) with the bias coordinate last; query (D,) dense."""
    q = _metrics_np.append(_metrics_np.asarray(query, _metrics_np.float64), 1.0)
    scores = centroids.astype(_metrics_np.float64) @ q
    order = sorted(range(len(scores)), key=lambda c: (-scores[c], c))
    out = []
    for v in forced:
        if v not in out:
            out.append(int(v))
    for c in order:
        for v in members_per_cluster[c]:
            if len(out) >= cap:
                return out
            if v not in out:
                out.append(int(v))
    return out[:cap]


def naive_cluster_means(rows, bias, members_per_cluster, old_centroids):
    """Each cluster's centroid as the float64 mean of its members' [row, bias]; empty clusters keep
    their old centroid."""
    out = _metrics_np.array(old_centroids, dtype=_metrics_np.float64)
    for c, members in enumerate(members_per_cluster):
        if len(members):
            aug = _metrics_np.hstack([rows[members], bias[members, None]]).astype(_metrics_np.float64)
            out[c] = aug.mean(axis=0)
    return out


def naive_nearest_centroid(rows, bias, centroids):
    """argmin_c |[row, bias] - c|^2 for every row (float64)."""
    aug = _metrics_np.hstack([rows, bias[:, None]]).astype(_metrics_np.float64)
    d = ((aug[:, None, :] - centroids[None, :, :].astype(_metrics_np.float64)) ** 2).sum(axis=2)
    return d.argmin(axis=1)


# ======================================================================================
# selection: slow references for slidepy/selection.py (LSH fill, random share, correction)
# ======================================================================================


def naive_corrected_loss(logits, positions, uniform_from, log_weight, loss):
    """Loss and d loss / d logits (unscaled) with the sampled-softmax correction: entries
    a >= uniform_from (when uniform_from >= 0) are uniform samples that each stand for
    exp(log_weight) neurons (Jean et al. 2015). positions: the labels' places in the set, all
    before uniform_from.
    softmax: p = softmax(z + log_weight * [a >= uniform_from]); loss = -mean over labels of
      log p_label; grad = p - y (y uniform over the labels).
    bce: weight w_a = exp(log_weight) for uniform entries, else 1; loss = sum_a w_a * softplus(z_a)
      - sum_labels z; grad = w_a * sigmoid(z_a) - y_a.
    """
    z = _mlp_np.asarray(logits, _mlp_np.float64)
    n = z.shape[0]
    uniform = _mlp_np.arange(n) >= (n if uniform_from < 0 else uniform_from)
    y = _mlp_np.zeros(n)
    positions = list(positions)
    assert all(p < (n if uniform_from < 0 else uniform_from) for p in positions)
    if loss == "softmax":
        y[positions] = 1.0 / len(positions)
        shifted = z + _mlp_np.where(uniform, log_weight, 0.0)
        lse = shifted.max() + _mlp_np.log(_mlp_np.exp(shifted - shifted.max()).sum())
        value = -float((y[positions] * (shifted[positions] - lse)).sum())
        return value, _mlp_np.exp(shifted - lse) - y
    w = _mlp_np.where(uniform, _mlp_np.exp(log_weight), 1.0)
    y[positions] = 1.0
    softplus = _mlp_np.maximum(z, 0.0) + _mlp_np.log1p(_mlp_np.exp(-_mlp_np.abs(z)))
    value = float((w * softplus).sum() - z[positions].sum())
    return value, w / (1.0 + _mlp_np.exp(-z)) - y


def naive_correction_weight(n_neurons, uniform_from, n_act, correction):
    """(uniform_from, log_weight) as selection.correction_weight: n_act - uniform_from uniform draws
    from the n_neurons - uniform_from neurons not chosen before them; (-1, 0.0) if none or off."""
    if not correction or uniform_from >= n_act:
        return -1, 0.0
    return uniform_from, math.log((n_neurons - uniform_from) / (n_act - uniform_from))


def naive_lsh_fill(index, h, forced, cap):
    """The forced ids, then the candidates of an lsh.LshIndex for the dense layer input h (D,),
    cut at `cap` ids in all: a hash index hashes the transformed query [h, 1] (ids 0..D) and takes
    its probed buckets under the index's policy; a cluster index takes the best clusters' members."""
    h = _mlp_np.asarray(h, _mlp_np.float32)
    if index.centroids_t.shape[0]:  # a cluster index
        n_c = index.centroids_t.shape[1]
        members = [index.cluster_members[index.cluster_indptr[c]:index.cluster_indptr[c + 1]].tolist()
                   for c in range(n_c)]
        return naive_probe_clusters(index.centroids_t.T, members, h, naive_unique(forced), cap)
    ids = _mlp_np.arange(h.shape[0] + 1, dtype=_mlp_np.int32)
    vals = _mlp_np.append(h, _mlp_np.float32(1.0)).astype(_mlp_np.float32)
    codes = naive_hash_codes(index.params, ids, vals, index.range_pow)
    policy, threshold = int(index.settings[1]), int(index.settings[2])
    return naive_select_candidates(policy, index.buckets, index.counts, codes, naive_unique(forced), cap, threshold)


def naive_lsh_active_set(index, h, labels, budget, share_permille, min_active, n_neurons, state, pool=()):
    """A training active set of an LSH output layer, as selection.select_active builds it: the
    unique labels, the index's candidates up to the budget less share_permille / 1000 of the room
    after the labels, then uniform negatives up to the budget (when the share is > 0: the step's
    shared pool first, then the sample's own draws), then own draws up to min_active. Returns (ids,
    uniform_from, state): where the uniform draws start, and the xorshift64* state after the draws
    (the stream naive_active_sets uses)."""
    forced = naive_unique(labels)
    room = max(budget - len(forced), 0)
    cap = len(forced) + room - (room * share_permille) // 1000
    ids = naive_lsh_fill(index, h, forced, cap)
    uniform_from = len(ids)
    if share_permille > 0:
        state = naive_uniform_fill(ids, max(budget, len(ids)), n_neurons, state, pool)
    state = naive_uniform_fill(ids, min_active, n_neurons, state)
    return ids, uniform_from, state


def naive_hidden_float32(weights, bias, x_ids, x_vals):
    """Layer 0 then ReLU in float32, adding one input feature at a time in input order, as
    kernels.forward_input_layer does with every neuron active (so the values are bit-equal)."""
    out = _mlp_np.array(bias, _mlp_np.float32)
    for f, v in zip(x_ids, x_vals):
        out += _mlp_np.float32(v) * weights[f]
    return _mlp_np.maximum(out, _mlp_np.float32(0.0))


# ======================================================================================
# test drivers: thin loops over one serial kernel, for the tests (no production code needs a
# whole-batch version of these leaves; the engine calls them per sample from its own drivers)
# ======================================================================================

import numpy as _drv_np

from slidepy import hashing as _drv_hs
from slidepy import tables as _drv_tb
from slidepy.constants import kinds_marker as _drv_kinds_marker


def hash_vector(params, ids, vals, range_pow):
    """Codes (L,) int32 of one sparse vector through hashing.hash_sparse (ids validated)."""
    _drv_hs.validate_hash_params(params)
    if not 1 <= int(range_pow) <= _drv_hs.MAX_CODE_BITS:
        raise ValueError(f"range_pow must be in [1, {_drv_hs.MAX_CODE_BITS}]")
    ids = _drv_np.ascontiguousarray(ids, dtype=_drv_np.int32)
    vals = _drv_np.ascontiguousarray(vals, dtype=_drv_np.float32)
    if ids.ndim != 1 or ids.shape != vals.shape:
        raise ValueError("ids/vals: need 1-d arrays of equal length")
    dim = int(params.spec[_drv_hs.SPEC_DIM])
    if ids.size and (ids.min() < 0 or ids.max() >= dim):
        raise ValueError(f"ids: need ids in [0, {dim})")
    n_hashes = int(params.spec[_drv_hs.SPEC_N_HASHES])
    codes = _drv_np.empty(int(params.spec[_drv_hs.SPEC_L]), _drv_np.int32)
    _drv_hs.hash_sparse(params, ids, vals, _drv_np.int64(ids.shape[0]), _drv_np.int64(range_pow), codes,
                        _drv_np.empty(n_hashes, _drv_np.float32), _drv_np.empty(n_hashes, _drv_np.int32),
                        _drv_kinds_marker([params.spec[_drv_hs.SPEC_FAMILY]]))
    return codes


def hash_batch(params, indptr, indices, values, range_pow):
    """Codes (B, L) int32 of the B rows of a CSR batch, one hash_vector per row."""
    if indptr[-1] > indices.shape[0] or indices.shape[0] != values.shape[0]:
        raise ValueError("indices/values: lengths must match and cover indptr[-1]")
    codes = _drv_np.empty((indptr.shape[0] - 1, int(params.spec[_drv_hs.SPEC_L])), _drv_np.int32)
    for i in range(codes.shape[0]):
        codes[i] = hash_vector(params, indices[indptr[i]:indptr[i + 1]], values[indptr[i]:indptr[i + 1]], range_pow)
    return codes


def query_union(buckets, counts, codes, stamp, stamp_value, hits, out_ids, n_already, max_out):
    """tables.union_candidates with the scalars as int64 (the engine's types)."""
    return _drv_tb.union_candidates(buckets, counts, codes, stamp, _drv_np.int32(stamp_value), hits, out_ids,
                                    _drv_np.int64(n_already), _drv_np.int64(max_out))


def select_batch(policy, buckets, counts, codes, n_items, max_out, min_hits=1):
    """tables.select_candidates for each query row of codes (B, L) with no forced ids:
    (ids (B, max_out) int32 padded with -1, n (B,) int64)."""
    n_tables, cap = buckets.shape[0], buckets.shape[2]
    stamp = _drv_np.zeros(int(n_items), _drv_np.int32)
    hits = _drv_np.zeros(int(n_items), _drv_np.int32)
    scratch = _drv_np.empty(_drv_tb.query_scratch_size(n_tables, cap), _drv_np.int32)
    out_ids = _drv_np.full((codes.shape[0], int(max_out)), -1, _drv_np.int32)
    out_n = _drv_np.zeros(codes.shape[0], _drv_np.int64)
    for i in range(codes.shape[0]):
        out_n[i] = _drv_tb.select_candidates(_drv_np.int64(policy), buckets, counts, codes[i], stamp,
                                             _drv_np.int32(i + 1), hits, out_ids[i], _drv_np.int64(0),
                                             _drv_np.int64(max_out), _drv_np.int64(min_hits), scratch)
    return out_ids, out_n


def naive_union_output(weights, bias, hidden, ids, counts, meta, n_neurons, loss, correction, grad_scale):
    """The output layer of a step as union.union_output_step computes it, sample by sample in
    float64: each sample's logits over its own active ids, the corrected loss, and the gradients.
    meta rows are [uniform_from, n_labels, label positions]. Returns (losses (B,), d hidden (B, D),
    d weights (N, D), d bias (N,))."""
    w = _mlp_np.asarray(weights, _mlp_np.float64)
    b_ = _mlp_np.asarray(bias, _mlp_np.float64)
    h = _mlp_np.asarray(hidden, _mlp_np.float64)
    losses = _mlp_np.zeros(h.shape[0])
    d_hidden = _mlp_np.zeros_like(h)
    d_w = _mlp_np.zeros_like(w)
    d_b = _mlp_np.zeros_like(b_)
    for s in range(h.shape[0]):
        n, n_labels = int(counts[s]), int(meta[s][1])
        if n == 0 or n_labels == 0:
            continue
        act = _mlp_np.asarray(ids[s][:n], _mlp_np.int64)
        z = w[act] @ h[s] + b_[act]
        start, log_weight = naive_correction_weight(n_neurons, int(meta[s][0]), n, correction)
        losses[s], g = naive_corrected_loss(z, list(meta[s][2:2 + n_labels]), start, log_weight, loss)
        g = g * grad_scale
        d_hidden[s] = g @ w[act]
        d_w[act] += _mlp_np.outer(g, h[s])
        d_b[act] += g
    return losses, d_hidden, d_w, d_b


# ======================================================================================
# Neighbours' votes: the blended scores of slidepy/neighbours.py.
# ======================================================================================

import numpy as _blend_np


def naive_input_cosine(query_rows, bank_rows):
    """(B, S) float64 cosine of dense input rows query_rows (B, F') with bank_rows (S, F): a
    feature past F is in no bank row, and a zero row is similar to none (0)."""
    q = _blend_np.zeros((query_rows.shape[0], bank_rows.shape[1]))
    width = min(query_rows.shape[1], bank_rows.shape[1])
    q[:, :width] = query_rows[:, :width]
    q_norm = _blend_np.linalg.norm(query_rows, axis=1, keepdims=True)  # of the whole row
    b_norm = _blend_np.linalg.norm(bank_rows, axis=1, keepdims=True)
    return (q / _blend_np.where(q_norm > 0, q_norm, 1)) @ (bank_rows / _blend_np.where(b_norm > 0, b_norm, 1)).T


def naive_blend(hidden, weights, bias, bank, sims=None):
    """(B, N) float64 blended scores of slidepy/neighbours.py (softmax and the bank's votes: a
    neighbours.NeighbourBank), written out the slow way; `sims` (B, S): the similarities to the
    bank (default: the cosine of hidden with bank.vectors, the hidden space)."""
    z = hidden.astype(_blend_np.float64) @ weights.T.astype(_blend_np.float64) + bias
    p = _blend_np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    out = (1 - bank.weight) * p
    if sims is None:
        units = hidden / _blend_np.maximum(_blend_np.linalg.norm(hidden, axis=1, keepdims=True), 1e-30)
        sims = units @ bank.vectors.T
    for i in range(hidden.shape[0]):
        near = _blend_np.argsort(-sims[i], kind="stable")[:bank.k]
        near = [s for s in near if sims[i, s] > 0]
        count = {s: _blend_np.exp((sims[i, s] - sims[i, near[0]]) / bank.temperature) for s in near}
        mass = sum(count[s] * (bank.y_indptr[s + 1] - bank.y_indptr[s]) for s in near)
        for s in near:
            for label in bank.y_indices[bank.y_indptr[s]:bank.y_indptr[s + 1]]:
                out[i, label] += bank.weight * count[s] / mass
    return out


def naive_loo_p1(sims, held, y_indptr, y_indices, k, temperature):
    """Leave-one-out P@1 of the votes alone (neighbours.choose_space): row i of sims (R, S) is
    bank sample held[i]'s similarity to every bank sample, itself included; it is voted for by
    the others, and counts a hit when its top-voted label (ties: the lowest id) is one of its own."""
    hits = 0
    for i, own in enumerate(held):
        row = sims[i].astype(_blend_np.float64).copy()
        row[own] = -_blend_np.inf
        near = [s for s in _blend_np.argsort(-row, kind="stable")[:k] if row[s] > 0]
        votes = _blend_np.zeros(int(y_indices.max()) + 1)
        for s in near:
            votes[y_indices[y_indptr[s]:y_indptr[s + 1]]] += _blend_np.exp((row[s] - row[near[0]]) / temperature)
        if near:
            hits += int(_blend_np.argmax(votes)) in set(y_indices[y_indptr[own]:y_indptr[own + 1]].tolist())
    return hits / len(held)


def assert_same_topk(ids, vals, want_ids, want_vals, rtol=1e-5, atol=1e-6):
    """Top-k scores within float32 summation-order rounding of the wanted ones (products whose
    terms BLAS adds in another order), and the ids the same wherever the scores beside them are
    further apart than twice that."""
    _blend_np.testing.assert_allclose(vals, want_vals, rtol=rtol, atol=atol)
    room = 2 * (rtol * _blend_np.abs(want_vals) + atol)
    gaps = _blend_np.abs(_blend_np.diff(want_vals, axis=1)) > room[:, 1:]
    clear = _blend_np.ones(want_ids.shape, bool)
    clear[:, :-1] &= gaps
    clear[:, 1:] &= gaps
    _blend_np.testing.assert_array_equal(ids[clear], want_ids[clear])


# ======================================================================================
# reranker: slow references for slidepy/reranker.py (per-label sets, a primal solver, sorted lists)
# ======================================================================================

import numpy as _leaf_np


def naive_leaf_pairs(shortlists, y_indptr, y_indices, n_labels, negatives=((), ())):
    """{label: (sorted samples, positive flags)}: the samples that have each label, shortlist it
    or are among its (labels, samples) `negatives`."""
    have = [set(y_indices[y_indptr[i]:y_indptr[i + 1]].tolist()) for i in range(len(y_indptr) - 1)]
    drawn = {(int(label), int(row)) for label, row in zip(*negatives)}
    pairs = {}
    for label in range(n_labels):
        rows = sorted(i for i in range(len(have))
                      if label in have[i] or label in set(shortlists[i].tolist()) or (label, i) in drawn)
        pairs[label] = (rows, [label in have[i] for i in rows])
    return pairs


def naive_unit_rows_with_bias(x_dense):
    """Rows scaled to unit L2 norm (zero rows stay zero), with a last column of 1 (the bias)."""
    norms = _leaf_np.linalg.norm(x_dense, axis=1, keepdims=True)
    unit = x_dense / _leaf_np.where(norms > 0, norms, 1.0)
    return _leaf_np.hstack([unit, _leaf_np.ones((x_dense.shape[0], 1))])


def naive_l2svm(x_rows, y, cost):
    """The L2-loss linear SVM's weights, min 0.5 |w|^2 + cost sum max(0, 1 - y w.x)^2, by L-BFGS on
    the primal (smooth and strictly convex): another road to the optimum dual descent reaches."""
    from scipy.optimize import minimize

    def objective(w):
        margin = _leaf_np.maximum(0.0, 1.0 - y * (x_rows @ w))
        return 0.5 * w @ w + cost * margin @ margin, w - 2.0 * cost * (x_rows.T @ (y * margin))

    return minimize(objective, _leaf_np.zeros(x_rows.shape[1]), jac=True, method="L-BFGS-B",
                    options={"gtol": 1e-10, "ftol": 1e-14, "maxiter": 10000}).x


def naive_rerank(ids, log_scores, leaf_scores, weight, k):
    """Top k by (1 - weight) log_score - weight max(1 - leaf, 0)^3, shortlist order breaking ties."""
    out_ids, out_scores = [], []
    for i in range(ids.shape[0]):
        blended = [(-_leaf_np.inf if ids[i, j] < 0 else (1 - weight) * float(log_scores[i, j])
                    - weight * max(1.0 - float(leaf_scores[i, j]), 0.0) ** 3, j) for j in range(ids.shape[1])]
        best = sorted(blended, key=lambda t: (-t[0], t[1]))[:k]
        out_ids.append([ids[i, j] for _, j in best])
        out_scores.append([s for s, _ in best])
    return _leaf_np.array(out_ids), _leaf_np.array(out_scores)


def naive_choose_blend(ids, log_scores, leaf_scores, y_indptr, y_indices, depths, shares, default, evidence):
    """At the first cost of `leaf_scores` ({cost: leaf scores}), the first (share, depth), depth by
    depth, whose naive_rerank of each sample's top `depth` (then the rest of its ids in their
    order) has the highest mean over samples of each sample's mean P@1, P@3, P@5, if its
    per-sample gain over (`default`, depths[0]) has a mean above `evidence` standard errors, else
    that default; then, cost by cost, the first best (cost, share, depth) at the next cost if its
    gain over the choice so far passes the same test."""
    def per_sample(cost, share, depth):
        leaf = leaf_scores[cost]
        head = naive_rerank(ids[:, :depth], log_scores[:, :depth], leaf[:, :depth], share, depth)[0]
        out = []
        for i in range(len(head)):
            top = list(head[i]) + list(ids[i, depth:])
            labels = set(y_indices[y_indptr[i]:y_indptr[i + 1]].tolist())
            out.append(sum(len({t for t in top[:k] if t >= 0} & labels) / k for k in (1, 3, 5)) / 3)
        return _leaf_np.array(out)

    def wins(gain):
        return gain.mean() > evidence * gain.std(ddof=1) / _leaf_np.sqrt(len(gain))

    costs = list(leaf_scores)
    scores = {(cost, share, depth): per_sample(cost, share, depth)
              for cost in costs for depth in depths for share in shares}
    at = {cost: [t for t in scores if t[0] == cost] for cost in costs}
    best = max(at[costs[0]], key=lambda t: scores[t].mean())  # max keeps the first of equals
    base = (costs[0], default, depths[0])
    chosen = best if wins(scores[best] - scores[base]) else base
    for cost in costs[1:]:
        best = max(at[cost], key=lambda t: scores[t].mean())
        if wins(scores[best] - scores[chosen]):
            chosen = best
    return chosen
