"""Shared fixtures: backends to test on (NumPy always; CuPy when a GPU is usable).

With ``PYPTY_DEVICE=strict`` in the environment the ``bk`` fixture is the
device-strict backend of :mod:`pypty.strict_device` instead of NumPy (the
strict pass of ``tests/test_device_strict.py``), so every test written against
``bk`` runs the CuPy branches with device-array semantics on the CPU.
"""
import os

import numpy as np
import pytest

from pypty.backend import cupy_available, get_backend

#: True in the strict pass (``PYPTY_DEVICE=strict``).
STRICT = os.environ.get("PYPTY_DEVICE", "").strip().lower() == "strict"

BACKENDS = (["strict"] if STRICT else ["numpy"]) + (["cupy"] if cupy_available() else [])


@pytest.fixture(params=BACKENDS)
def bk(request):
    """A pypty Backend; the CuPy variant runs only where a CUDA device exists."""
    return get_backend(request.param)


def test_backend():
    """The backend a test without the ``bk`` fixture should compute on: the one ``pypty.iterative.run`` picks
    (strict in the strict pass, CuPy where a GPU is usable, else NumPy), so that a test may compare what it
    computes itself with what a run returns, bit for bit, on every machine."""
    return get_backend()


test_backend.__test__ = False  # not a test


def host(a):
    """``a`` as a NumPy array for host-side checks: ``bk.to_numpy`` (the same object for NumPy arrays)."""
    return test_backend().to_numpy(a)


def fd_check(fun, x, block, rng, h=1e-6):
    """Directional derivative of ``fun`` (a pypty objective: blocks -> (loss, gradients)) along a random direction
    of one block: (analytic from the gradient, central difference), with the step scaled by the block's size."""
    _, g = fun(x)
    v = x[block]
    d = rng.standard_normal(v.shape) + (1j * rng.standard_normal(v.shape) if np.iscomplexobj(v) else 0)
    h = h * max(1.0, float(np.abs(host(v)).max()))
    dd = test_backend().asarray(d)
    num = (fun(dict(x, **{block: v + h * dd}))[0] - fun(dict(x, **{block: v - h * dd}))[0]) / (2 * h)
    return float(np.real(np.vdot(host(g[block]).ravel(), d.ravel()))), num


def rand_complex(rng, shape, scale=1.0):
    return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def vdot(a, b):
    """Real inner product Re sum conj(a) b, as used by the optimizer."""
    return float(np.real(np.vdot(np.asarray(a).ravel(), np.asarray(b).ravel())))
