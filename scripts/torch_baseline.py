#!/usr/bin/env python
"""PyTorch (CPU, dense) baseline for slidepy's benchmarks.

The same network as slidepy trains: sparse input -> EmbeddingBag(n_features, hidden[0],
mode="sum", per_sample_weights) + bias -> ReLU [-> Linear(hidden[i-1], hidden[i]) -> ReLU ...] ->
Linear(hidden[-1], n_labels) -> full softmax cross-entropy against the sample's labels taken as a
uniform target distribution (1/|labels| on each label; samples with no labels contribute nothing
to the loss). Glorot (Xavier-uniform) or He-normal weights (slidepy's model.init), zero biases,
inverted dropout on every hidden layer's outputs, dense Adam over every parameter (decoupled
weight decay on the weights alone where asked, as slidepy's), every output computed for every
sample (no sampling): this is the "dense" baseline the SLIDE paper compares against. slidepy's
model.input_scale c is training on c x (slidepy's Engine), so the inputs are multiplied by c here;
its warm-up and linear decay are the learning rate's here too (`lr_warmup_steps`, `lr_schedule`).

First layer: three implementations are available (`first_layer=`):
  "embbag"        F.embedding_bag(..., mode="sum", per_sample_weights)   (the default)
  "sparse_mm"     torch.sparse.mm(CSR batch (B, n_features), W1 (n_features, hidden))
  "sparse_mm_coo" the same with a COO batch
Measured on the project's 2-core dev VM (AMD EPYC, torch 2.13.0+cpu with MKL), Amazon-670K shape
(135,909 features, 76 nnz/sample, hidden 128), batch 128, first layer forward+backward alone,
median ms/step (the VM was shared with other jobs, load average 4-8, so absolute figures are
inflated; the ratio was stable across 3 runs):
    1 thread:   embbag 33-58   sparse_mm (CSR) 66-140   sparse_mm (COO) 68-136
    2 threads:  embbag 23-110  sparse_mm (CSR) 124-256  sparse_mm (COO) 45-167
embbag is about 2x faster, so it is the default. Most of its time is the dense (n_features,
hidden) W1 gradient. Either way the first layer is a few percent of a full step (~1.35 s of CPU
time on one core at the Amazon-670K shape). `--compare-first-layer` re-measures it.

Output layer (`output_impl=`): "fused" (the default) is a custom autograd.Function doing the
same math as F.linear + softmax cross-entropy + autograd, but in one reused (B, n_labels) buffer,
with the W2/b2 gradients written in place (see _FusedOutputCE). At the Amazon-670K shape it
was 2.3x faster than the plain "autograd" route (47.8 vs 20.6 samples/s, 1 thread, same load).
Both are kept and tested to give the same gradients.

Importable API (used by scripts/bench.py):
    train_torch(train, test, *, hidden=128, batch_size=128, lr=1e-3, epochs=1, max_steps=None,
                threads=1, seed=0, eval_every_steps=None, eval_subset=2000, time_budget_s=None,
                callback=None) -> dict
`train`/`test` are anything with slidepy.data.Dataset's fields (x_indptr, x_indices, x_values,
y_indptr, y_indices, n_features, n_labels); slidepy itself is only imported by main().

Timing conventions:
  * "train_seconds" is the wall time spent in training steps (batch assembly, forward, backward,
    optimizer), evaluation excluded, warm-up steps included.
  * "samples_per_s" = samples trained after the first `warmup_steps` steps (default 3) divided by
    the training time of those steps. If training ran no more than warm-up steps, every step counts.
    "samples_per_s_median_step" = batch_size / median post-warm-up step time (less sensitive to
    other processes on a shared machine).
  * Evaluation is exact: full forward over all labels, top-5 by torch.topk, P@k computed in numpy
    with the XC definition |top-k ∩ labels| / k averaged over every evaluated sample (samples
    without labels count as 0). The evaluated samples are the first `eval_subset` test samples
    (all of them when eval_subset is None or 0 or larger than the test set).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
import warnings
from typing import Any, Callable

import numpy as np

AMAZON_670K_SHAPE = dict(n_features=135_909, n_labels=670_091, nnz_per_sample=76,
                         labels_per_sample=(1, 10))


# --------------------------------------------------------------------------------------------
# Batching helpers (numpy, framework-free)
# --------------------------------------------------------------------------------------------

def gather_csr(indptr: np.ndarray, indices: np.ndarray, values: np.ndarray | None,
               rows: np.ndarray):
    """Rows `rows` of a CSR matrix -> (indptr (len(rows)+1,) int64, indices, values or None)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = indptr[rows].astype(np.int64)
    lengths = indptr[rows + 1].astype(np.int64) - starts
    new_indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    total = int(new_indptr[-1])
    # position k of the output comes from starts[row(k)] + (k - new_indptr[row(k)])
    src = np.arange(total, dtype=np.int64) + np.repeat(starts - new_indptr[:-1], lengths)
    out_idx = indices[src]
    out_val = values[src] if values is not None else None
    return new_indptr, out_idx, out_val


def precision_at_k(topk: np.ndarray, y_indptr: np.ndarray, y_indices: np.ndarray,
                   ks=(1, 3, 5)) -> dict[str, float]:
    """XC precision@k. topk: (n, >=max(ks)) predicted label ids, best first, for samples whose
    labels are rows 0..n-1 of (y_indptr, y_indices). Returns {"P@1": .., "P@3": .., "P@5": ..}."""
    topk = np.asarray(topk)
    n = topk.shape[0]
    if n == 0:
        return {f"P@{k}": float("nan") for k in ks}
    kmax = max(ks)
    hits = np.zeros((n, kmax), dtype=bool)
    for i in range(n):
        lab = y_indices[y_indptr[i]:y_indptr[i + 1]]
        if len(lab):
            hits[i] = np.isin(topk[i, :kmax], lab)
    cum = np.cumsum(hits, axis=1)
    return {f"P@{k}": float(cum[:, k - 1].sum() / (k * n)) for k in ks}


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024.0 * 1024.0) if sys.platform == "darwin" else r / 1024.0


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

def hidden_sizes(hidden) -> list[int]:
    """The hidden layers' sizes: an int is one hidden layer."""
    sizes = [int(hidden)] if isinstance(hidden, (int, np.integer)) else [int(h) for h in hidden]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"hidden must be a size or a list of sizes >= 1, got {hidden!r}")
    return sizes


def _build_model(n_features: int, n_labels: int, hidden, seed: int, init: str = "glorot"):
    """{"w1", "b1", ..., "w<L+1>", "b<L+1>"} for L hidden layers: w1 (n_features, hidden[0]) (row f
    is the embedding of feature f), the others (out, in) as in nn.Linear, the last the output
    layer (n_labels, hidden[-1]). Weights Glorot-uniform or He-normal (std sqrt(2 / fan_in)), as
    slidepy's network.init_params; biases zero."""
    import torch

    if init not in ("glorot", "he"):
        raise ValueError(f"unknown init {init!r}")
    g = torch.Generator().manual_seed(seed)

    def weight(fan_in: int, fan_out: int, shape):
        if init == "he":
            return torch.nn.Parameter(torch.empty(shape).normal_(0.0, math.sqrt(2.0 / fan_in), generator=g))
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        return torch.nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=g))

    sizes = hidden_sizes(hidden)
    params = {"w1": weight(n_features, sizes[0], (n_features, sizes[0])),
              "b1": torch.nn.Parameter(torch.zeros(sizes[0]))}
    for i, (d, n) in enumerate(zip(sizes, sizes[1:] + [n_labels]), start=2):
        params[f"w{i}"] = weight(d, n, (n, d))
        params[f"b{i}"] = torch.nn.Parameter(torch.zeros(n))
    return params


def _output_key(params) -> int:
    """The number of the output layer's parameters (w<L+1>, b<L+1>)."""
    return len(params) // 2


def _to_torch_batch(ds, rows: np.ndarray, first_layer: str):
    """Assemble the torch inputs of a batch: first-layer inputs and label tensors."""
    import torch

    xp, xi, xv = gather_csr(ds.x_indptr, ds.x_indices, ds.x_values, rows)
    B = len(rows)
    if first_layer == "embbag":
        xin = (torch.from_numpy(xi.astype(np.int64, copy=False)),
               torch.from_numpy(xp[:-1].copy()),
               torch.from_numpy(np.ascontiguousarray(xv, dtype=np.float32)))
    elif first_layer == "sparse_mm":
        with warnings.catch_warnings():  # "CSR support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            xin = torch.sparse_csr_tensor(
                torch.from_numpy(xp), torch.from_numpy(xi.astype(np.int64)),
                torch.from_numpy(np.ascontiguousarray(xv, dtype=np.float32)),
                size=(B, ds.n_features), check_invariants=False)
    elif first_layer == "sparse_mm_coo":
        row_ids = np.repeat(np.arange(B, dtype=np.int64), np.diff(xp))
        xin = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([row_ids, xi.astype(np.int64)])),
            torch.from_numpy(np.ascontiguousarray(xv, dtype=np.float32)),
            size=(B, ds.n_features), is_coalesced=True, check_invariants=False)
    else:
        raise ValueError(f"unknown first_layer {first_layer!r}")
    yp, yi, _ = gather_csr(ds.y_indptr, ds.y_indices, None, rows)
    return xin, yp, yi


def _first_layer(params, xin, first_layer: str):
    import torch
    import torch.nn.functional as F

    if first_layer == "embbag":
        idx, offsets, w = xin
        h = F.embedding_bag(idx, params["w1"], offsets, mode="sum", per_sample_weights=w)
    else:
        h = torch.sparse.mm(xin, params["w1"])
    return torch.relu(h + params["b1"])


def _hidden(params, xin, first_layer: str, dropout: float = 0.0):
    """The last hidden layer's outputs; in training (dropout > 0) each hidden layer's outputs
    dropped as slidepy's model.dropout drops them."""
    import torch
    import torch.nn.functional as F

    h = _first_layer(params, xin, first_layer)
    for i in range(2, _output_key(params)):
        if dropout:
            h = F.dropout(h, p=dropout, training=True)
        h = torch.relu(F.linear(h, params[f"w{i}"], params[f"b{i}"]))
    if dropout:
        h = F.dropout(h, p=dropout, training=True)
    return h


def _loss(logits, yp: np.ndarray, yi: np.ndarray):
    """Mean over labeled samples of  logsumexp(z_i) - mean_{j in y_i} z_ij  (= CE against the
    uniform distribution on y_i). Returns None when no sample of the batch has a label."""
    import torch

    counts = np.diff(yp)
    labeled = counts > 0
    n_lab = int(labeled.sum())
    if n_lab == 0:
        return None
    row_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    w = np.repeat(1.0 / np.maximum(counts, 1), counts).astype(np.float32)
    picked = logits[torch.from_numpy(row_of), torch.from_numpy(yi.astype(np.int64))]
    label_term = (picked * torch.from_numpy(w)).sum()
    lse = torch.logsumexp(logits[torch.from_numpy(np.flatnonzero(labeled))], dim=1).sum()
    return (lse - label_term) / n_lab


class _FusedOutputCE:
    """Output layer + softmax cross-entropy (uniform target on the labels) with a hand-written
    backward that works in one reused (batch, n_labels) buffer.

    Same math as F.linear -> _loss -> autograd, but: the logits buffer is allocated once and turned
    in place into softmax and then into d(loss)/d(logits); and the W2/b2 gradients are written with
    `out=` straight into persistent .grad tensors (the autograd route allocates and page-faults a
    fresh 343 MB logits tensor, several temporaries of that size, and a fresh 343 MB dW2 every step
    at the Amazon-670K shape). Only h (the hidden layer) goes through autograd; W2/b2 get their
    gradients as a side effect of the backward pass, so they must not be zeroed/None-d between
    steps (the training loop only resets W1/b1's gradients).
    """

    def __init__(self, w2, b2, max_batch: int):
        import torch

        self.w2, self.b2 = w2, b2
        self.z = torch.empty(max_batch, w2.shape[0])
        w2.grad = torch.zeros_like(w2)
        b2.grad = torch.zeros_like(b2)
        outer = self

        class Fn(torch.autograd.Function):
            @staticmethod
            def forward(ctx, h, row_of, lab, wts, row_scale, n_lab):
                z = outer.z[: h.shape[0]]
                torch.addmm(outer.b2.detach(), h, outer.w2.detach().t(), out=z)
                label_term = (z[row_of, lab] * wts).sum()
                m = z.amax(dim=1, keepdim=True)
                z.sub_(m).exp_()
                ssum = z.sum(dim=1, keepdim=True)
                lse = (ssum.log() + m).squeeze(1)
                loss = ((lse * (row_scale > 0)).sum() - label_term) / n_lab
                # z <- (softmax - target) / n_lab on labeled rows, 0 on unlabeled rows
                z.mul_(row_scale.unsqueeze(1) / ssum)
                z.index_put_((row_of, lab), -wts / n_lab, accumulate=True)
                ctx.save_for_backward(h)
                return loss

            @staticmethod
            def backward(ctx, g):
                (h,) = ctx.saved_tensors
                z = outer.z[: h.shape[0]]
                if float(g) != 1.0:
                    z.mul_(g)
                w2 = outer.w2.detach()
                dh = torch.mm(z, w2)
                torch.mm(z.t(), h, out=outer.w2.grad)
                torch.sum(z, dim=0, out=outer.b2.grad)
                return dh, None, None, None, None, None

        self.fn = Fn

    def loss(self, h, yp: np.ndarray, yi: np.ndarray):
        """Mean over labeled samples of the uniform-target CE; None if no sample has a label."""
        import torch

        counts = np.diff(yp)
        n_lab = int((counts > 0).sum())
        if n_lab == 0:
            return None
        row_of = torch.from_numpy(np.repeat(np.arange(len(counts), dtype=np.int64), counts))
        lab = torch.from_numpy(yi.astype(np.int64))
        wts = torch.from_numpy(np.repeat(1.0 / np.maximum(counts, 1), counts).astype(np.float32))
        row_scale = torch.from_numpy(((counts > 0) / n_lab).astype(np.float32))
        return self.fn.apply(h, row_of, lab, wts, row_scale, n_lab)


def _forward_logits(params, xin, first_layer: str):
    import torch.nn.functional as F

    out = _output_key(params)
    return F.linear(_hidden(params, xin, first_layer), params[f"w{out}"], params[f"b{out}"])


def evaluate_torch(params, test, *, eval_subset: int | None = 2000, chunk: int = 128,
                   first_layer: str = "embbag") -> dict[str, float]:
    """Exact top-5 over all labels on the first `eval_subset` test samples; XC P@1/3/5."""
    import torch

    n = test.n_samples if hasattr(test, "n_samples") else len(test.x_indptr) - 1
    if eval_subset:
        n = min(n, int(eval_subset))
    tops = []
    with torch.no_grad():
        for s in range(0, n, chunk):
            rows = np.arange(s, min(n, s + chunk), dtype=np.int64)
            xin, _, _ = _to_torch_batch(test, rows, first_layer)
            logits = _forward_logits(params, xin, first_layer)
            k = min(5, logits.shape[1])
            top = torch.topk(logits, k, dim=1).indices.numpy()
            if k < 5:  # fewer than 5 labels: pad with an impossible id
                top = np.concatenate([top, np.full((len(rows), 5 - k), -1)], axis=1)
            tops.append(top)
    topk = np.concatenate(tops) if tops else np.zeros((0, 5), dtype=np.int64)
    return precision_at_k(topk, test.y_indptr[:n + 1], test.y_indices)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

def train_torch(train, test=None, *, hidden: int | list[int] = 128, batch_size: int = 128, lr: float = 1e-3,
                epochs: int = 1, max_steps: int | None = None, threads: int = 1, seed: int = 0,
                eval_every_steps: int | None = None, eval_subset: int | None = 2000,
                time_budget_s: float | None = None,
                callback: Callable[[dict], Any] | None = None,
                first_layer: str = "embbag", output_impl: str = "fused", warmup_steps: int = 3,
                log_every_steps: int | None = None, keep_params: bool = False, dropout: float = 0.0,
                lr_schedule: str = "constant", lr_warmup_steps: int = 0, input_scale: float = 1.0,
                init: str = "glorot", betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                weight_decay: float = 0.0) -> dict:
    """Train the dense PyTorch baseline; see the module docstring for the conventions.

    hidden: the hidden layers' sizes (an int: one layer). dropout: inverted dropout on every hidden
    layer's outputs in training (slidepy's model.dropout); lr_schedule "linear" decays the
    learning rate to 0 over the planned steps (epochs, or max_steps if fewer), after
    lr_warmup_steps of linear ramp-up, as slidepy's training.lr_schedule / warmup_steps do
    (`warmup_steps` is the timing's: steps left out of samples_per_s). input_scale: slidepy's
    model.input_scale, resolved (the inputs are multiplied by it). init, betas, eps, weight_decay:
    slidepy's model.init, training.beta1/beta2, eps and weight_decay (decoupled, weights only; a
    dense optimizer shrinks every row each step, where slidepy's lazy one shrinks the rows a batch
    touched).

    keep_params: also return the trained tensors under "params" (w1 (n_features, hidden[0]), b1,
    ..., the output layer's last), e.g. to save them for `slidepy import`; w1 holds input_scale,
    so that they score raw inputs.

    callback, if given, is called with each curve entry (a dict) right after it is recorded.
    Training stops at the first of: `epochs` epochs, `max_steps` steps, `time_budget_s` seconds of
    training time (checked after each step). A final evaluation always runs when `test` is given.
    """
    import torch

    prev_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _train(train, test, hidden=hidden, batch_size=batch_size, lr=lr, epochs=epochs,
                      max_steps=max_steps, threads=threads, seed=seed,
                      eval_every_steps=eval_every_steps, eval_subset=eval_subset,
                      time_budget_s=time_budget_s, callback=callback, first_layer=first_layer,
                      output_impl=output_impl, warmup_steps=warmup_steps,
                      log_every_steps=log_every_steps, keep_params=keep_params, dropout=dropout,
                      lr_schedule=lr_schedule, lr_warmup_steps=lr_warmup_steps, input_scale=input_scale,
                      init=init, betas=betas, eps=eps, weight_decay=weight_decay)
    finally:
        torch.set_num_threads(prev_threads)


def _train(train, test, *, hidden, batch_size, lr, epochs, max_steps, threads, seed,
           eval_every_steps, eval_subset, time_budget_s, callback, first_layer, output_impl,
           warmup_steps, log_every_steps, keep_params=False, dropout=0.0, lr_schedule="constant",
           lr_warmup_steps=0, input_scale=1.0, init="glorot", betas=(0.9, 0.999), eps=1e-8,
           weight_decay=0.0) -> dict:
    import torch

    torch.manual_seed(seed)
    n = len(train.x_indptr) - 1
    if input_scale != 1.0:
        train = _scaled_inputs(train, input_scale)
        test = None if test is None else _scaled_inputs(test, input_scale)
    params = _build_model(int(train.n_features), int(train.n_labels), hidden, seed, init=init)
    out = _output_key(params)
    # slidepy decays weight rows, never biases (AdamW's decoupled form); without decay plain Adam
    groups = [{"params": [p for k, p in params.items() if k.startswith("w")], "weight_decay": weight_decay},
              {"params": [p for k, p in params.items() if k.startswith("b")], "weight_decay": 0.0}]
    adam = torch.optim.AdamW if weight_decay else torch.optim.Adam
    opt_kwargs = {}
    try:  # fused CPU Adam (torch >= 2.4) is the fastest dense Adam available
        opt = adam(groups, lr=lr, betas=tuple(betas), eps=eps, fused=True)
        opt_kwargs["fused"] = True
    except (RuntimeError, TypeError):
        opt = adam(groups, lr=lr, betas=tuple(betas), eps=eps, foreach=True)
        opt_kwargs["foreach"] = True

    if output_impl == "fused":
        fused = _FusedOutputCE(params[f"w{out}"], params[f"b{out}"], batch_size)
    elif output_impl == "autograd":
        fused = None
    else:
        raise ValueError(f"unknown output_impl {output_impl!r}")

    if lr_schedule not in ("constant", "linear"):
        raise ValueError(f"unknown lr_schedule {lr_schedule!r}")
    planned = int(epochs) * math.ceil(n / batch_size)
    planned = min(planned, max_steps) if max_steps is not None else planned
    rng = np.random.default_rng(seed)
    curve: list[dict] = []
    step = 0
    train_seconds = 0.0
    timed_seconds = 0.0  # after warm-up
    timed_samples = 0
    all_samples = 0
    step_times: list[float] = []  # per-step seconds after warm-up
    timed_cpu = 0.0  # process CPU seconds of the steps after warm-up (all threads)
    stop = False
    last_loss = float("nan")

    def record():
        point = {"train_seconds": train_seconds, "step": step}
        point.update(evaluate_torch(params, test, eval_subset=eval_subset, first_layer=first_layer))
        curve.append(point)
        if callback is not None:
            callback(dict(point))
        return point

    for _epoch in range(int(epochs)):
        perm = rng.permutation(n)
        for s in range(0, n, batch_size):
            if max_steps is not None and step >= max_steps:
                stop = True
                break
            t0 = time.perf_counter()
            c0 = time.process_time()
            rows = perm[s:s + batch_size]
            xin, yp, yi = _to_torch_batch(train, rows, first_layer)
            if lr_schedule == "linear" or lr_warmup_steps:
                for group in opt.param_groups:
                    group["lr"] = scheduled_lr(lr, lr_schedule, lr_warmup_steps, step, step / max(1, planned))
            hidden_out = _hidden(params, xin, first_layer, dropout)
            if fused is not None:
                loss = fused.loss(hidden_out, yp, yi)
            else:
                loss = _loss(torch.nn.functional.linear(hidden_out, params[f"w{out}"], params[f"b{out}"]), yp, yi)
            if loss is not None:
                if fused is not None:  # the output layer's grads are overwritten in place by the backward
                    for k in range(1, out):
                        params[f"w{k}"].grad = params[f"b{k}"].grad = None
                else:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                last_loss = float(loss.detach())
            del loss
            dt = time.perf_counter() - t0
            dc = time.process_time() - c0
            step += 1
            train_seconds += dt
            all_samples += len(rows)
            if step > warmup_steps:
                timed_seconds += dt
                timed_samples += len(rows)
                step_times.append(dt)
                timed_cpu += dc
            if log_every_steps and step % log_every_steps == 0:
                print(f"step {step} loss {last_loss:.4f} train_s {train_seconds:.1f} "
                      f"samples/s {timed_samples / max(timed_seconds, 1e-9):.1f}", file=sys.stderr)
            if test is not None and eval_every_steps and step % eval_every_steps == 0:
                record()
            if time_budget_s is not None and train_seconds >= time_budget_s:
                stop = True
                break
        if stop:
            break

    if test is not None and (not curve or curve[-1]["step"] != step):
        record()
    final = curve[-1] if curve else {}
    if timed_samples == 0:  # no step past warm-up: count everything
        timed_samples, timed_seconds = all_samples, train_seconds
    result = {
        "engine": "torch",
        "first_layer": first_layer,
        "output_impl": output_impl,
        "optimizer": "adam" + (" (fused)" if opt_kwargs.get("fused") else " (foreach)"),
        "threads": int(threads),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "hidden": hidden_sizes(hidden),
        "dropout": float(dropout),
        "lr_schedule": lr_schedule,
        "lr_warmup_steps": int(lr_warmup_steps),
        "input_scale": float(input_scale),
        "init": init,
        "samples_per_s": timed_samples / timed_seconds if timed_seconds > 0 else float("nan"),
        # robust to a busy machine: batch_size / median step time (steps after warm-up)
        "samples_per_s_median_step": (batch_size / float(np.median(step_times))
                                      if step_times else float("nan")),
        # samples per process-CPU-second (all threads summed); with threads=1 this approximates
        # the throughput an otherwise idle core would give
        "samples_per_cpu_s": timed_samples / timed_cpu if timed_cpu > 0 else float("nan"),
        "train_seconds": train_seconds,
        "steps": step,
        "final_loss": last_loss,
        "curve": curve,
        "P@1": final.get("P@1", float("nan")),
        "P@3": final.get("P@3", float("nan")),
        "P@5": final.get("P@5", float("nan")),
        "peak_rss_mb": _peak_rss_mb(),
    }
    if keep_params:
        result["params"] = {name: p.detach() for name, p in params.items()}
        if input_scale != 1.0:  # trained on c x: the same network on raw inputs has c w1
            result["params"]["w1"] = result["params"]["w1"] * float(input_scale)
    return result


def scheduled_lr(lr: float, schedule: str, warmup_steps: int, step: int, progress: float) -> float:
    """slidepy.optimizer.scheduled_lr (this script imports no slidepy for training): `lr` ramped up
    linearly over `warmup_steps`, and for "linear" scaled by (1 - progress)."""
    factor = (step + 1) / warmup_steps if warmup_steps and step < warmup_steps else 1.0
    if schedule == "linear":
        factor *= max(0.0, 1.0 - min(1.0, progress))
    return lr * factor


def _scaled_inputs(ds, scale: float):
    """`ds` with its feature values multiplied by `scale` (the fields the baseline reads)."""
    from types import SimpleNamespace

    fields = {k: getattr(ds, k) for k in ("x_indptr", "x_indices", "y_indptr", "y_indices", "n_features", "n_labels")}
    return SimpleNamespace(x_values=np.asarray(ds.x_values, np.float32) * np.float32(scale),
                           n_samples=len(ds.x_indptr) - 1, **fields)


def compare_first_layer(ds, *, hidden=128, batch_size=128, steps=30, threads=1, seed=0) -> dict:
    """Time forward+backward of the first layer alone (ms/step) for each implementation."""
    import torch

    torch.set_num_threads(int(threads))
    g = torch.Generator().manual_seed(seed)
    w1 = torch.nn.Parameter(torch.randn(int(ds.n_features), hidden, generator=g) * 0.01)
    b1 = torch.nn.Parameter(torch.zeros(hidden))
    params = {"w1": w1, "b1": b1}
    rng = np.random.default_rng(seed)
    n = len(ds.x_indptr) - 1
    out = {}
    for fl in ("embbag", "sparse_mm", "sparse_mm_coo"):
        times = []
        for i in range(steps + 3):
            rows = rng.integers(0, n, size=batch_size)
            t0 = time.perf_counter()
            xin, _, _ = _to_torch_batch(ds, rows, fl)
            h = _first_layer(params, xin, fl)
            w1.grad = None
            h.sum().backward()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        out[fl] = 1000.0 * float(np.median(times))
    return out


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _import_slidepy():
    try:
        import slidepy  # noqa: F401
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def require_torch() -> None:
    """Exit with the install line when PyTorch is missing (an optional extra, not a dependency)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("this script needs PyTorch: pip install torch==2.13.0 --index-url "
                 "https://download.pytorch.org/whl/cpu (or the '.[torch]' extra)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", help="training file (XC text format)")
    p.add_argument("--test", help="test file (XC text format)")
    p.add_argument("--synthetic-amazon", type=int, metavar="N",
                   help="generate N training samples at the Amazon-670K shape instead of --train")
    p.add_argument("--synthetic-test", type=int, default=2000, metavar="N",
                   help="test samples generated with --synthetic-amazon (default 2000)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, nargs="+", default=[128], metavar="SIZE", help="hidden layers' sizes")
    p.add_argument("--dropout", type=float, default=0.0, help="of every hidden layer's outputs (model.dropout)")
    p.add_argument("--lr-schedule", choices=["constant", "linear"], default="constant")
    p.add_argument("--lr-warmup-steps", type=int, default=0, help="training.warmup_steps")
    p.add_argument("--input-scale", type=float, default=1.0, help="model.input_scale (resolved): inputs x this")
    p.add_argument("--init", choices=["glorot", "he"], default="glorot")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--time-budget", type=float, default=None, metavar="SEC")
    p.add_argument("--eval-every-steps", type=int, default=None)
    p.add_argument("--eval-subset", type=int, default=2000, help="0 = whole test set")
    p.add_argument("--first-layer", choices=["embbag", "sparse_mm", "sparse_mm_coo"],
                   default="embbag")
    p.add_argument("--output-impl", choices=["fused", "autograd"], default="fused",
                   help="fused: hand-written output-layer backward in a reused buffer (default); "
                        "autograd: plain F.linear + logsumexp loss + autograd (reference)")
    p.add_argument("--log-every-steps", type=int, default=None)
    p.add_argument("--compare-first-layer", action="store_true",
                   help="only time the first-layer implementations on the training data")
    p.add_argument("--json", metavar="OUT.json", help="write the result dict here")
    p.add_argument("--save-model", metavar="OUT.pt",
                   help="save the trained weights (a state_dict: w1, b1, w2, b2) for `slidepy import`")
    a = p.parse_args(argv)
    require_torch()

    _import_slidepy()
    if a.synthetic_amazon:
        from slidepy.synthetic import make_synthetic
        sh = AMAZON_670K_SHAPE
        train, test = make_synthetic(a.synthetic_amazon, a.synthetic_test, sh["n_features"],
                                     sh["n_labels"], nnz_per_sample=sh["nnz_per_sample"],
                                     labels_per_sample=sh["labels_per_sample"], seed=a.seed)
    else:
        if not a.train:
            p.error("--train (or --synthetic-amazon) is required")
        from slidepy.data import load_dataset
        train = load_dataset(a.train)
        test = load_dataset(a.test) if a.test else None

    if a.compare_first_layer:
        res = compare_first_layer(train, hidden=a.hidden[0], batch_size=a.batch_size,
                                  threads=a.threads, seed=a.seed)
        res = {"first_layer_ms_per_step": res, "threads": a.threads, "batch_size": a.batch_size}
    else:
        res = train_torch(train, test, hidden=a.hidden, batch_size=a.batch_size, lr=a.lr,
                          epochs=a.epochs, max_steps=a.max_steps, threads=a.threads, seed=a.seed,
                          eval_every_steps=a.eval_every_steps, eval_subset=a.eval_subset or None,
                          time_budget_s=a.time_budget, first_layer=a.first_layer,
                          output_impl=a.output_impl,
                          log_every_steps=a.log_every_steps, keep_params=bool(a.save_model),
                          dropout=a.dropout, lr_schedule=a.lr_schedule, lr_warmup_steps=a.lr_warmup_steps,
                          input_scale=a.input_scale, init=a.init)
        if a.save_model:
            import torch

            torch.save(res.pop("params"), a.save_model)
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
