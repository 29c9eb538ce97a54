"""Transmission through a slab: multiplication by object patches, and fractional transmissions.

A wave (B, 1 or Mo, Mp, Y, X) passes slab s as ``psi * u[:, :, None]`` with
``u`` the object patches (B, Mo, Y, X) of that slab: every probe mode meets
every object mode.  The map is bilinear; :func:`transmit_adjoint` gives both
partial adjoints (to the wave and to the patches).  Higher-order splitting
schemes transmit through a fraction w of a slab, ``O^w = exp(w log O)``
(principal branch).
"""
from __future__ import annotations

import numpy as np

__all__ = ["transmit", "transmit_adjoint", "transmission_power", "transmission_power_grad"]


def transmit(psi, u):
    """``psi * u[:, :, None]``: psi (B, 1 or Mo, Mp, Y, X), u (B, Mo, Y, X) -> (B, Mo, Mp, Y, X)."""
    return psi * u[:, :, None]


def transmit_adjoint(xp, g, psi, u, to_patches=True, to_wave=True):
    """Adjoints of :func:`transmit` at (psi, u) applied to the gradient ``g`` (B, Mo, Mp, Y, X).

    Returns ``(g_u, g_psi)``: ``g_u = sum_Mp conj(psi) g`` (B, Mo, Y, X), the
    gradient of the patches (None unless ``to_patches``), and
    ``g_psi = g conj(u)`` (B, Mo, Mp, Y, X), the gradient of the incoming
    wave before its broadcast over object modes (None unless ``to_wave``).
    """
    g_u = xp.sum(psi.conj() * g, axis=2) if to_patches else None
    g_psi = g * u.conj()[:, :, None] if to_wave else None
    return g_u, g_psi


def transmission_power(xp, patch, weight):
    """``patch ** weight`` as ``exp(weight * log(patch))`` (principal branch).

    patch : complex (..., Y, X); weight : float.  ``weight == 1`` returns
    ``patch`` itself (no copy).
    """
    if weight == 1.0:
        return patch
    tiny = np.finfo(patch.real.dtype).tiny
    return xp.exp(weight * xp.log(patch + tiny)).astype(patch.dtype, copy=False)


def transmission_power_grad(xp, patch, powered, weight, g_powered):
    """Back-propagate a gradient through :func:`transmission_power`.

    With u = O^w holomorphic, ``G_O = conj(du/dO) G_u = conj(w u / O) G_u``.
    """
    if weight == 1.0:
        return g_powered
    tiny = np.finfo(patch.real.dtype).tiny
    return (weight * powered / (patch + tiny)).conj() * g_powered
