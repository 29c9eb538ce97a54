"""Data-fidelity losses: value and derivative with respect to the model intensity.

Each loss maps model intensities ``I`` and measured counts ``D`` (same shape,
any float dtype, FFT order) to a float64 sum and the real array ``dL/dI``.
Gradients for the complex arrays follow by the chain rule in
:func:`pypty.operators.detector.farfield_adjoint`.  Compressed data
(``lsq_compressed``, virtual-detector signals) use the intensity least squares
on the signals (:func:`data_loss`).

``eps`` (> 0, in counts) keeps square roots and logarithms finite where the
model intensity vanishes; it is part of the definition, so the returned
derivative is the exact derivative of the returned value.

=============  ==================================================================
name           L(I; D)  (summed over pixels and patterns)
=============  ==================================================================
lsq_sqrt       (sqrt(I + eps) - sqrt(D + eps))^2     amplitude (Gaussian) metric,
               e.g. Thibault & Guizar-Sicairos, New J. Phys. 14 (2012) 063004
ml             I - D log(I + eps)                     Poisson negative
               log-likelihood (up to a constant), same reference
lsq            (I - D)^2                              intensity least squares
lsq_sqrt_2     (sqrt(I + 3/8) - sqrt(D + 3/8))^2      Gaussian metric after
               Anscombe's variance-stabilising transform (Biometrika 35 (1948)
               246), suited to low counts
=============  ==================================================================
"""
from __future__ import annotations

__all__ = ["LOSSES", "loss_and_derivative", "data_loss"]

_ANSCOMBE = 3.0 / 8.0


def _lsq_sqrt(xp, inten, data, eps):
    a = xp.sqrt(inten + eps)
    r = a - xp.sqrt(data + eps)
    return xp.sum(r * r, dtype=xp.float64), r / a


def _ml(xp, inten, data, eps):
    ie = inten + eps
    val = xp.sum(inten, dtype=xp.float64) - xp.sum(data * xp.log(ie), dtype=xp.float64)
    return val, 1.0 - data / ie


def _lsq(xp, inten, data, eps):
    r = inten - data
    return xp.sum(r * r, dtype=xp.float64), 2.0 * r


def _lsq_sqrt_2(xp, inten, data, eps):
    a = xp.sqrt(inten + _ANSCOMBE)
    r = a - xp.sqrt(data + _ANSCOMBE)
    return xp.sum(r * r, dtype=xp.float64), r / a


LOSSES = {"lsq_sqrt": _lsq_sqrt, "ml": _ml, "lsq": _lsq, "lsq_sqrt_2": _lsq_sqrt_2}


def loss_and_derivative(name: str, xp, inten, data, eps: float):
    """Evaluate a data-fidelity loss.

    Parameters
    ----------
    name : {"lsq_sqrt", "ml", "lsq", "lsq_sqrt_2"}
    xp : array module
    inten : array, float, shape (B, Y, X)
        Model intensities (>= 0).
    data : array, float, same shape
        Measured counts (>= 0).
    eps : float
        Positive regulariser in counts (see module docstring).

    Returns
    -------
    value : 0-d float64 array (on the device of ``inten``)
    dl_di : array, dtype of ``inten``, shape (B, Y, X)

    Raises
    ------
    ValueError
        Unknown ``name``.
    """
    try:
        fn = LOSSES[name]
    except KeyError:
        raise ValueError(f"algorithm {name!r} is not a known loss; choose one of {sorted(LOSSES)}") from None
    val, d = fn(xp, inten, data, eps)
    return val, d.astype(inten.dtype, copy=False)


def data_loss(name: str, xp, model, data, eps: float, compressed: bool = False):
    """Data-fidelity loss of one batch: :func:`loss_and_derivative`, or for compressed data ``sum (s - d)^2``.

    Parameters
    ----------
    model, data : real (B, Y, X) patterns in FFT order, or (B, M) signals when ``compressed``.

    Returns
    -------
    value : 0-d float64 array; dl_dmodel : array like ``model``.
    """
    if compressed:
        r = model - data
        return xp.sum(r * r, dtype=xp.float64), 2.0 * r
    return loss_and_derivative(name, xp, model, data, eps)
