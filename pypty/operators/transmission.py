"""Transmission through a slab: multiplication by object patches, and fractional transmissions.

A wave (B, 1 or Mo, Mp, Y, X) passes slab s as ``psi * u[:, :, None]`` with
``u`` the object patches (B, Mo, Y, X) of that slab: every probe mode meets
every object mode.  The map is bilinear: :func:`transmit_adjoint` is the
adjoint in the wave, :func:`transmit_patches_adjoint` the adjoint in the
patches.  Higher-order splitting
schemes transmit through a fraction w of a slab, ``O^w = exp(w log O)``
(principal branch).
"""
from __future__ import annotations

import numpy as np

__all__ = ["transmit", "transmit_adjoint", "transmit_patches_adjoint", "transmission_power",
           "transmission_power_grad"]


def transmit(psi, u):
    """``psi * u[:, :, None]``: psi (B, 1 or Mo, Mp, Y, X), u (B, Mo, Y, X) -> (B, Mo, Mp, Y, X)."""
    return psi * u[:, :, None]


def transmit_adjoint(g, u):
    """Adjoint of :func:`transmit` in the wave: ``g * conj(u)[:, :, None]`` (B, Mo, Mp, Y, X).

    The gradient of the incoming wave before its broadcast over object modes
    (sum it over axis 1 for a wave that was broadcast).
    """
    return g * u.conj()[:, :, None]


def transmit_patches_adjoint(xp, g, psi):
    """Adjoint of :func:`transmit` in the patches: ``sum_Mp conj(psi) g`` (B, Mo, Y, X).

    g : (B, Mo, Mp, Y, X) gradient of the transmitted wave; psi : the
    incoming wave (B, 1 or Mo, Mp, Y, X).  The model scatters the result onto
    the object (:func:`pypty.operators.patches.scatter_patches`) before it
    computes :func:`transmit_adjoint`, so the two temporaries are never alive
    together.
    """
    return xp.sum(psi.conj() * g, axis=2)


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
