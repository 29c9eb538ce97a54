"""Shared fixtures: backends to test on (NumPy always; CuPy when a GPU is usable)."""
import numpy as np
import pytest

from pypty.backend import cupy_available, get_backend

BACKENDS = ["numpy"] + (["cupy"] if cupy_available() else [])


@pytest.fixture(params=BACKENDS)
def bk(request):
    """A pypty Backend; the CuPy variant runs only where a CUDA device exists."""
    return get_backend(request.param)


def rand_complex(rng, shape, scale=1.0):
    return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def vdot(a, b):
    """Real inner product Re sum conj(a) b, as used by the optimizer."""
    return float(np.real(np.vdot(np.asarray(a).ravel(), np.asarray(b).ravel())))
