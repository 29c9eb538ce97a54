"""Value and derivative of each data-fidelity loss against hand-computed numbers."""
import numpy as np
import pytest

from pypty.model.losses import loss_and_derivative

I = np.array([[[4.0, 1.0], [0.25, 9.0]]])
D = np.array([[[1.0, 1.0], [0.0, 16.0]]])


def test_values_known():
    v, _ = loss_and_derivative("lsq", np, I, D, 0.0)
    assert float(v) == pytest.approx(9 + 0 + 0.0625 + 49)
    v, _ = loss_and_derivative("lsq_sqrt", np, I, D, 0.0)
    assert float(v) == pytest.approx(1 + 0 + 0.25 + 1)
    v, _ = loss_and_derivative("ml", np, I, D, 0.0)
    assert float(v) == pytest.approx(14.25 - (np.log(4) + 0 + 0 + 16 * np.log(9)))
    v, _ = loss_and_derivative("lsq_sqrt_2", np, I, D, 0.0)
    a = np.sqrt(I + 0.375) - np.sqrt(D + 0.375)
    assert float(v) == pytest.approx(float(np.sum(a**2)))


@pytest.mark.parametrize("name", ["lsq_sqrt", "ml", "lsq", "lsq_sqrt_2"])
def test_derivative_central_difference(name):
    rng = np.random.default_rng(0)
    inten = rng.uniform(0.5, 5, (2, 3, 3))
    data = rng.poisson(2.0, (2, 3, 3)).astype(float)
    _, d = loss_and_derivative(name, np, inten, data, 1e-3)
    h = 1e-6
    for idx in [(0, 0, 0), (1, 2, 1), (0, 1, 2)]:
        e = np.zeros_like(inten)
        e[idx] = h
        num = (float(loss_and_derivative(name, np, inten + e, data, 1e-3)[0])
               - float(loss_and_derivative(name, np, inten - e, data, 1e-3)[0])) / (2 * h)
        assert d[idx] == pytest.approx(num, rel=1e-6)


def test_float32_accumulates_in_float64():
    inten = np.full((4, 64, 64), 1.0 + 1e-4, np.float32)
    data = np.ones((4, 64, 64), np.float32)
    v, d = loss_and_derivative("lsq", np, inten, data, 0.0)
    assert v.dtype == np.float64 and d.dtype == np.float32


def test_unknown_loss():
    with pytest.raises(ValueError, match="lsq_sqrt"):
        loss_and_derivative("l2", np, I, D, 0.0)
