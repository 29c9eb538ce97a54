"""Vector algebra over block dicts (``dict[str, array]``, NumPy or CuPy).

A parameter vector, a gradient or a search direction is a dict of named
blocks, each a real or complex array of any shape; see :mod:`pypty.optim`
for the data model and the gradient convention.  Every function dispatches on
the array module of the block (:func:`array_module`), so CuPy arrays stay on
the GPU; only NumPy and the standard library are imported here.  None of the
functions changes its arguments.
"""
from __future__ import annotations

import math
import sys

import numpy

__all__ = ["vdot", "axpy", "scale", "norm", "block_dot", "array_module", "signature", "check_grad"]


def array_module(a):
    """Array module of an array, without importing CuPy.

    Parameters
    ----------
    a : numpy.ndarray or cupy.ndarray
        Any array.

    Returns
    -------
    module
        ``cupy.get_array_module(a)`` if CuPy has already been imported by
        someone else, otherwise ``numpy``; the namespace of the device-strict
        backend for its arrays (:mod:`pypty.strict_device`).
    """
    strict = getattr(a, "_pypty_xp", None)
    if strict is not None:
        return strict
    cupy = sys.modules.get("cupy")
    return cupy.get_array_module(a) if cupy is not None else numpy


def block_dot(a, b) -> float:
    """Real inner product ``Re(sum(conj(a) * b))`` of two arrays.

    Parameters
    ----------
    a, b : array, real or complex, same shape
        One block of each of two block dicts.  Mixed real/complex pairs are
        allowed (a real array is a complex one with zero imaginary part).

    Returns
    -------
    float
        The sum, accumulated in float64 (``vdot`` when both are float64 or
        both complex128), as a Python float.
    """
    xp = array_module(a)
    if a.dtype == b.dtype and a.dtype in (numpy.float64, numpy.complex128):
        return float(xp.vdot(a.ravel(), b.ravel()).real)
    ac, bc = xp.iscomplexobj(a), xp.iscomplexobj(b)
    if ac and bc:
        r = xp.sum(a.real * b.real, dtype=xp.float64) + xp.sum(a.imag * b.imag, dtype=xp.float64)
    elif ac:
        r = xp.sum(a.real * b, dtype=xp.float64)
    elif bc:
        r = xp.sum(a * b.real, dtype=xp.float64)
    else:
        r = xp.sum(a * b, dtype=xp.float64)
    return float(r)


def vdot(a: dict, b: dict) -> float:
    """Real inner product ``sum_k Re(sum(conj(a[k]) * b[k]))`` of two block dicts.

    Parameters
    ----------
    a, b : dict[str, array]
        Block dicts; ``b`` has every key of ``a`` with ``b[k].shape ==
        a[k].shape``.  Blocks may be real or complex.

    Returns
    -------
    float
        The sum over the keys of ``a`` of :func:`block_dot`, in float64.

    Raises
    ------
    KeyError
        ``b`` lacks a key of ``a``.
    """
    return sum((block_dot(a[k], b[k]) for k in a), 0.0)


def norm(a: dict) -> float:
    """Euclidean norm ``sqrt(vdot(a, a))`` of a block dict.

    Parameters
    ----------
    a : dict[str, array]
        Block dict, real or complex blocks.

    Returns
    -------
    float
        The norm (a Python float; ``inf``/``nan`` if a block is not finite).
    """
    return math.sqrt(max(vdot(a, a), 0.0))


def scale(alpha: float, d: dict) -> dict:
    """Scaled copy ``{k: alpha * d[k]}`` with the dtype of each block kept.

    Parameters
    ----------
    alpha : float
        Real scalar (converted with ``float``; complex64 blocks stay complex64).
    d : dict[str, array]
        Block dict.

    Returns
    -------
    dict[str, array]
        New arrays, same keys, shapes and dtypes as ``d``.

    Raises
    ------
    TypeError
        ``alpha`` is not a real scalar.
    """
    alpha = float(alpha)
    return {k: (alpha * v).astype(v.dtype, copy=False) for k, v in d.items()}


def axpy(alpha: float, d: dict, x: dict) -> dict:
    """Return ``{k: x[k] + alpha * d[k]}`` as new arrays with ``x[k].dtype`` kept.

    Parameters
    ----------
    alpha : float
        Real scalar (converted with ``float``).
    d : dict[str, array]
        Update direction; has every key of ``x`` with the same shapes.
    x : dict[str, array]
        Base point; its keys and dtypes define the result.

    Returns
    -------
    dict[str, array]
        New arrays, same keys, shapes and dtypes as ``x``.

    Raises
    ------
    KeyError
        ``d`` lacks a key of ``x``.
    TypeError
        A complex ``d[k]`` would be added to a real ``x[k]``.
    """
    alpha = float(alpha)
    out = {}
    for k, xk in x.items():
        dk = d[k]
        xp = array_module(xk)
        if xp.iscomplexobj(dk) and not xp.iscomplexobj(xk):
            raise TypeError(f"block {k!r}: complex update for a real block")
        out[k] = (xk + alpha * dk).astype(xk.dtype, copy=False)
    return out


def signature(x: dict) -> tuple:
    """Names, shapes and dtypes of the blocks of ``x``, in a comparable form.

    Parameters
    ----------
    x : dict[str, array]
        Block dict.

    Returns
    -------
    tuple
        Sorted tuple of ``(name, shape tuple, dtype string)``; two block dicts
        have equal signatures iff they have the same block set.
    """
    return tuple(sorted((k, tuple(v.shape), str(v.dtype)) for k, v in x.items()))


def check_grad(x: dict, g: dict) -> None:
    """Check that gradient ``g`` has the keys and block shapes of ``x``.

    Parameters
    ----------
    x : dict[str, array]
        Parameter block dict.
    g : dict[str, array]
        Gradient returned by the objective at ``x``.

    Raises
    ------
    ValueError
        The key sets differ, or a block of ``g`` has another shape than the
        block of ``x`` of the same name.
    """
    if set(g) != set(x):
        raise ValueError(f"gradient keys {sorted(g)} differ from parameter keys {sorted(x)}")
    for k, v in x.items():
        if tuple(g[k].shape) != tuple(v.shape):
            raise ValueError(f"block {k!r}: gradient shape {g[k].shape} != parameter shape {v.shape}")
