"""Row-sparse optimizer steps: only the weight rows and biases touched in the batch are visited.

SLIDE's C++ ran a dense Adam step over every neuron after each batch; at 670K output neurons that
step alone costs more than the sparse forward/backward. Here each layer's `row_touched` marks
(set during backward) are turned into a row list, and the update runs over those rows only.
Untouched rows keep their moments unchanged until they next receive gradient ("lazy" Adam, as in
TensorFlow's LazyAdam): the bias correction uses the global step, so a row's first update after
a pause is a normal Adam update with stale moments, not a catch-up.

Each kernel also zeroes the gradient rows it consumed and clears their touched marks, so the
next batch starts from clean accumulators without a pass over the whole layer.

No fastmath here: the optimizer decides the weights, and reassociation bought NaNs in UMAP's SGD.
"""

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, error_model="numpy")
def adam_update_rows(param, grad, m, v, touched, rows, lr_t, beta1, beta2, eps, decay):
    """Adam on rows `rows` of the 2-D arrays param/grad/m/v (all the same shape, float32).

    lr_t already carries the bias correction: lr * sqrt(1 - beta2^t) / (1 - beta1^t).
    decay = lr * weight_decay shrinks the row first, decoupled from the moments (AdamW,
    Loshchilov & Hutter 2019); like the moments, a row decays only in the steps that touch it.
    Each row is owned by one iteration: no races. All arithmetic stays in float32 (a float64
    literal such as `1.0 - beta1` would promote the whole update to float64 and halve the SIMD
    width), and error_model="numpy" drops the division's zero check (eps > 0): 22,875 x 128
    rows took 0.88 instead of 1.35 ms on one core.
    """
    width = param.shape[1]
    one_minus_b1 = np.float32(1.0) - beta1
    one_minus_b2 = np.float32(1.0) - beta2
    shrink = np.float32(1.0) - decay
    for r in prange(rows.shape[0]):
        row = rows[r]
        p = param[row]
        g = grad[row]
        mm = m[row]
        vv = v[row]
        for j in range(width):
            gj = g[j]
            mj = beta1 * mm[j] + one_minus_b1 * gj
            vj = beta2 * vv[j] + one_minus_b2 * gj * gj
            mm[j] = mj
            vv[j] = vj
            p[j] = shrink * p[j] - lr_t * mj / (np.sqrt(vj) + eps)
            g[j] = 0.0
        touched[row] = 0


@njit(parallel=True, cache=True)
def sgd_update_rows(param, grad, touched, rows, lr):
    """Plain SGD on rows `rows`: param -= lr * grad; zeroes the consumed gradient."""
    width = param.shape[1]
    for r in prange(rows.shape[0]):
        row = rows[r]
        p = param[row]
        g = grad[row]
        for j in range(width):
            p[j] -= lr * g[j]
            g[j] = 0.0
        touched[row] = 0


def touched_rows(touched: np.ndarray) -> np.ndarray:
    """Indices (int64) of the marked rows, ascending."""
    return np.flatnonzero(touched)


def adam_lr(lr: float, beta1: float, beta2: float, step: int) -> np.float32:
    """The bias-corrected step size of Adam at 1-based step `step`."""
    return np.float32(lr * np.sqrt(1.0 - beta2**step) / (1.0 - beta1**step))


def scheduled_lr(lr: float, schedule: str, warmup_steps: int, step: int, progress: float) -> float:
    """The learning rate of 0-based step `step`: `lr` ramped up linearly over `warmup_steps`, and
    for the "linear" schedule scaled by (1 - progress), progress in [0, 1] being the share of the
    run already done. "constant" with no warm-up returns `lr` itself."""
    factor = 1.0
    if warmup_steps and step < warmup_steps:
        factor = (step + 1) / warmup_steps
    if schedule == "linear":
        factor *= max(0.0, 1.0 - min(1.0, progress))
    return lr if factor == 1.0 else lr * factor


def apply_updates(layers, *, optimizer: str, lr: float, beta1: float, beta2: float, eps: float, step: int,
                  weight_decay: float = 0.0) -> int:
    """One optimizer step over every layer's touched rows and biases. Returns rows updated.
    Adam's weight_decay applies to weight rows, never to biases."""
    updated = 0
    lr_t = adam_lr(lr, beta1, beta2, step) if optimizer == "adam" else np.float32(lr)
    b1, b2, e = np.float32(beta1), np.float32(beta2), np.float32(eps)
    decay, no_decay = np.float32(lr * weight_decay), np.float32(0.0)
    for layer in layers:
        rows = touched_rows(layer.row_touched)
        bias_rows = touched_rows(layer.bias_touched)
        # A bias vector is updated as a column of one-float rows: the same kernel serves both.
        bias2 = layer.bias.reshape(-1, 1)
        bias_grad2 = layer.bias_grad.reshape(-1, 1)
        if optimizer == "adam":
            adam_update_rows(layer.weights, layer.weight_grad, layer.weight_m, layer.weight_v, layer.row_touched,
                             rows, lr_t, b1, b2, e, decay)
            adam_update_rows(bias2, bias_grad2, layer.bias_m.reshape(-1, 1), layer.bias_v.reshape(-1, 1),
                             layer.bias_touched, bias_rows, lr_t, b1, b2, e, no_decay)
        else:
            sgd_update_rows(layer.weights, layer.weight_grad, layer.row_touched, rows, lr_t)
            sgd_update_rows(bias2, bias_grad2, layer.bias_touched, bias_rows, lr_t)
        updated += rows.shape[0]
    return updated
