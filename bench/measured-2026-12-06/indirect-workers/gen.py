import numpy as np
from numba import njit

@njit(cache=True)
def leaf0(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf1(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf2(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf3(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf4(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf5(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf6(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf7(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf8(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf9(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf10(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def leaf11(a, b, n):
    s = 0.0
    for j in range(n):
        s += a[j] * b[j] + np.sqrt(abs(a[j]))
        if a[j] > 3: a[j] = np.exp(-a[j])
    for j in range(n):
        b[j] = np.tanh(b[j]) * s
    return s

@njit(cache=True)
def worker(a, b, n):
    s = 0.0
    s += leaf0(a, b, n)
    s += leaf1(a, b, n)
    s += leaf2(a, b, n)
    s += leaf3(a, b, n)
    s += leaf4(a, b, n)
    s += leaf5(a, b, n)
    s += leaf6(a, b, n)
    s += leaf7(a, b, n)
    s += leaf8(a, b, n)
    s += leaf9(a, b, n)
    s += leaf10(a, b, n)
    s += leaf11(a, b, n)
    if n < 0: raise ValueError("bad n")
    return s
