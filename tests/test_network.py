"""network.init_params against the initialisations it names: Glorot-uniform (Glorot & Bengio
2010: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), variance 2 / (fan_in + fan_out)) and
He-normal (He et al. 2015: N(0, 2 / fan_in)), with zero biases, gradients and moments.

The expected figures are worked out by hand for the sizes below, not taken from the code: layer 0
is 300 features -> 200 units, stored input-major (300, 200); layer 1 is 200 -> 500, stored
neuron-major (500, 200). Both layers' fan_in is their input dimension D (300, then 200)."""

import numpy as np
import pytest

from slidepy.network import init_params

SIZES = [(300, 200), (200, 500)]
SHAPES = [(300, 200), (500, 200)]
# Glorot: a = sqrt(6 / (300 + 200)) = sqrt(0.012) = 0.109545, variance 0.004;
#         a = sqrt(6 / (200 + 500)) = sqrt(0.0085714) = 0.092582, variance 0.0028571
GLOROT_LIMIT = [0.109545, 0.092582]
GLOROT_VAR = [0.004, 0.0028571]
# He: std sqrt(2 / 300) = 0.081650, sqrt(2 / 200) = 0.1
HE_STD = [0.081650, 0.1]


def _moments(w):
    w = w.astype(np.float64).ravel()
    mean, var = w.mean(), w.var()
    kurtosis = np.mean((w - mean) ** 4) / var**2
    return w, mean, var, kurtosis


def test_glorot_uniform_weights_fill_the_range_with_the_glorot_variance():
    layers = init_params(SIZES, init="glorot", seed=0)
    for layer, shape, limit, variance in zip(layers, SHAPES, GLOROT_LIMIT, GLOROT_VAR):
        assert layer.weights.shape == shape and layer.weights.dtype == np.float32
        w, mean, var, kurtosis = _moments(layer.weights)
        n = w.size  # 60,000 and 100,000 draws
        # within (-a, a], and reaching its ends: uniform over the whole range, not a narrower one
        assert np.abs(w).max() <= np.float32(limit) * (1 + 1e-5)
        assert np.abs(w).max() > 0.999 * limit and w.min() < -0.999 * limit
        # the sample variance of U(-a, a) has relative std 0.89 / sqrt(n) (< 0.004 here): 3% is 8 sigma
        assert var == pytest.approx(variance, rel=0.03)
        assert abs(mean) < 5 * np.sqrt(variance / n)
        # flat: a uniform's kurtosis is 1.8 (a normal's 3), and half the draws lie within a / 2
        assert kurtosis == pytest.approx(1.8, abs=0.05)
        assert np.mean(np.abs(w) < limit / 2) == pytest.approx(0.5, abs=0.01)


def test_he_normal_weights_have_std_sqrt_2_over_fan_in():
    layers = init_params(SIZES, init="he", seed=0)
    for layer, shape, std in zip(layers, SHAPES, HE_STD):
        assert layer.weights.shape == shape and layer.weights.dtype == np.float32
        w, mean, var, kurtosis = _moments(layer.weights)
        # the sample std of a normal has relative std 1 / sqrt(2n) (< 0.003 here): 2% is 7 sigma
        assert np.sqrt(var) == pytest.approx(std, rel=0.02)
        assert abs(mean) < 5 * std / np.sqrt(w.size)
        # normal, not uniform: kurtosis 3, and 4.55% of the draws beyond 2 std
        assert kurtosis == pytest.approx(3.0, abs=0.1)
        assert np.mean(np.abs(w) > 2 * std) == pytest.approx(0.0455, abs=0.005)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_biases_gradients_and_moments_start_at_zero(optimizer):
    for layer, shape, (_, n) in zip(init_params(SIZES, optimizer=optimizer, seed=1), SHAPES, SIZES):
        assert layer.bias.shape == (n,) and not layer.bias.any()
        assert layer.weight_grad.shape == shape and not layer.weight_grad.any() and not layer.bias_grad.any()
        moments = shape if optimizer == "adam" else (0, 0)
        for m in (layer.weight_m, layer.weight_v):
            assert m.shape == moments and m.dtype == np.float32 and not m.any()
        for m in (layer.bias_m, layer.bias_v):
            assert m.shape == ((n,) if optimizer == "adam" else (0,)) and not m.any()
        assert layer.row_touched.shape == (shape[0],) and not layer.row_touched.any()


def test_the_seed_alone_decides_the_weights():
    a, b, c = (init_params(SIZES, seed=s) for s in (7, 7, 8))
    for la, lb, lc in zip(a, b, c):
        np.testing.assert_array_equal(la.weights, lb.weights)
        assert not np.array_equal(la.weights, lc.weights)
    # the layers are drawn apart: layer 1 does not repeat layer 0's draws (scaled)
    signs = [np.sign(layer.weights[:200, :200]) for layer in a]
    assert np.mean(signs[0] == signs[1]) == pytest.approx(0.5, abs=0.02)
