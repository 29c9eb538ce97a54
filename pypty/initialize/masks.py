"""Reciprocal-space masks for the probe constraints.

:func:`sigmoid_mask` builds the soft aperture that PtyRAD's ``probe_mask_k``
multiplies into the probe spectrum; in pypty it is a mask for
``probe_constraint_mask`` (or ``aperture_mask``), whose complement the
reciprocal-space probe term penalises (:mod:`pypty.regularizers.probe_terms`,
``design/regularizers.md`` sections 3.2 and 4.2).
"""
from __future__ import annotations

import numpy as np

__all__ = ["sigmoid_mask"]


def sigmoid_mask(shape, radius: float, width: float) -> np.ndarray:
    """A centred sigmoid disc in reciprocal space, 1 inside (allowed) and 0 outside.

    Parameters
    ----------
    shape : (int, int)
        (Y, X) of the mask: the probe window (``upsample_pattern`` times the
        padded pattern), the shape of ``probe_constraint_mask``.
    radius : float > 0
        Radius of the disc as a fraction of the Nyquist frequency (0.5
        cycles/px): the mask is 1/2 at ``abs(f) = radius / 2`` cycles/px.
    width : float > 0
        Softness of the edge, in cycles/px (PtyRAD's convention, 2 * width in
        fractions of Nyquist): the mask falls from 0.993 to 0.007 while
        ``abs(f)`` goes from ``radius/2 - width/2`` to ``radius/2 + width/2``.

    Returns
    -------
    numpy.ndarray, float64, shape (Y, X)
        ``s(f) = 1 / (1 + exp(10 (abs(f) - radius/2) / width))`` with
        ``f = ((y - Y//2) / Y, (x - X//2) / X)`` in cycles/px, i.e. centred at
        (Y//2, X//2) like the patterns (``fftshift`` order); values in [0, 1].
        The frequencies are per axis, so the disc is round in cycles/px for
        non-square windows too.

    Raises
    ------
    ValueError
        ``shape`` is not two positive ints, or ``radius``/``width`` are not
        finite and > 0.

    Notes
    -----
    Source: ``design/regularizers.md`` section 4.2 ("probe_mask_k"); the same
    mask as PtyRAD's ``probe_mask_k`` for square windows (there
    ``s(r) = 1 / (1 + exp(10 (r - N radius / 2) / (width N)))`` with r in px
    from (N//2, N//2); dividing r by N gives the formula above).  Use it as
    ``probe_constraint_mask=sigmoid_mask((Y, X), 0.22, 0.05)``, together with
    ``probe_reg_constraint_weight``.
    """
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"sigmoid_mask: shape must be two ints (Y, X), got {shape!r}") from None
    if ny < 1 or nx < 1 or (ny, nx) != tuple(shape):
        raise ValueError(f"sigmoid_mask: shape must be two ints >= 1, got {shape!r}")
    radius, width = float(radius), float(width)
    if not (np.isfinite(radius) and radius > 0):
        raise ValueError(f"sigmoid_mask: radius must be finite and > 0 (fraction of Nyquist), got {radius!r}")
    if not (np.isfinite(width) and width > 0):
        raise ValueError(f"sigmoid_mask: width must be finite and > 0 (cycles/px), got {width!r}")
    fy = (np.arange(ny) - ny // 2) / ny
    fx = (np.arange(nx) - nx // 2) / nx
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    z = np.clip(10.0 * (f - radius / 2) / width, -700.0, 700.0)  # no overflow warning in exp
    return 1.0 / (1.0 + np.exp(z))
