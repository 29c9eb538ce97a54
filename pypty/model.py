"""Far-field multislice model: loss and Wirtinger gradients for one dataset.

Composes the operators of :mod:`pypty.operators`.  For a scan position with
top-left window corner ``c`` (integer, canvas px) and sub-pixel remainder
``s`` (px), the model is::

    psi_0      = ifft2(fft2(P) * R(s))                 shift      (B, Mp, Y, X)
    psi_{n+1}  = K_n * (O_n[c] * psi_n)  for n < S-1   transmit + propagate
    exit       = O_{S-1}[c] * psi_{S-1}                                (B, Mo, Mp, Y, X)
    I          = sum_{Mo, Mp} |fft2(exit)|^2            detect     (B, Y, X)

with ``K_n`` the band-limited Fresnel propagator over ``slice_distances[n]``
(the last distance is not used in the far field: it only adds a phase in the
detector plane).  Every probe mode is combined with every object mode and the
intensities add incoherently.  FFTs are unitary, so ``sum(I)`` equals the
probe's total intensity ``sum |P|^2`` times the object's transmission; the
probe carries the counts of a pattern.

Internal layouts (FFT axes last): object (S, Mo, Ny, Nx), probe (Mp, Y, X),
positions (N, 2) (y, x) in px, data (N, Y, X) in FFT order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import operators as ops
from .losses import loss_and_derivative

__all__ = ["FarFieldModel", "split_positions"]


def split_positions(xp, positions, window_yx, canvas_yx, subpixel=True):
    """Integer window corners and sub-pixel remainders of scan positions.

    Parameters
    ----------
    positions : float array (B, 2)
        Top-left window corners (y, x) in canvas px.
    window_yx, canvas_yx : (int, int)
        Probe window and object canvas shapes.
    subpixel : bool
        False: remainders are zero (positions rounded).

    Returns
    -------
    corners : int64 (B, 2), rounded and clipped to ``[0, canvas - window]``
    frac : float64 (B, 2), ``positions - corners`` (zeros if not subpixel)
    """
    hi = xp.asarray([canvas_yx[0] - window_yx[0], canvas_yx[1] - window_yx[1]])
    corners = xp.clip(xp.rint(positions), 0, hi).astype(xp.int64)
    frac = positions - corners if subpixel else xp.zeros_like(positions)
    return corners, frac


@dataclass
class FarFieldModel:
    """Static description of the far-field multislice experiment.

    Parameters
    ----------
    bk : pypty.backend.Backend
    window_yx : (int, int)
        Probe window = padded pattern shape (Y, X) in px.
    canvas_yx : (int, int)
        Object canvas (Ny, Nx) in px.
    kernels : list of device arrays, complex, (Y, X)
        Fresnel propagators between consecutive slices (length S - 1).
    complex_dtype : numpy dtype
        complex64 or complex128.
    loss_name : str
        Data-fidelity loss (see :mod:`pypty.losses`).
    eps : float
        Loss regulariser in counts.
    """

    bk: object
    window_yx: tuple
    canvas_yx: tuple
    kernels: list
    complex_dtype: np.dtype
    loss_name: str = "lsq_sqrt"
    eps: float = 1e-6
    kyx: tuple = field(init=False)

    def __post_init__(self):
        xp = self.bk.xp
        rdt = np.finfo(self.complex_dtype).dtype
        ky = np.fft.fftfreq(self.window_yx[0])[:, None]
        kx = np.fft.fftfreq(self.window_yx[1])[None, :]
        self.kyx = (xp.asarray(ky, dtype=rdt), xp.asarray(kx, dtype=rdt))

    # ------------------------------------------------------------------ helpers
    def _prepare(self, obj, positions, subpixel):
        xp = self.bk.xp
        corners, frac = split_positions(xp, positions, self.window_yx, self.canvas_yx, subpixel)
        idx = ops.patch_indices(xp, corners, self.window_yx, self.canvas_yx)
        ramp = ops.shift_ramp(xp, self.kyx, frac, self.complex_dtype)
        patches = ops.extract_patches(xp, obj, idx)
        return idx, ramp, patches

    def _multislice(self, probe_hat, ramp, patches, keep):
        """Returns (exit wave, list of waves entering each slice if keep)."""
        psi = ops.shift_probe(self.bk, probe_hat, ramp)[:, None]  # (B, 1, Mp, Y, X)
        waves = []
        n_slices = patches.shape[0]
        for s in range(n_slices):
            if keep:
                waves.append(psi)
            psi = psi * patches[s][:, :, None]
            if s < n_slices - 1:
                psi = ops.propagate(self.bk, psi, self.kernels[s])
        return psi, waves

    # ------------------------------------------------------------------ public
    def intensities(self, obj, probe, positions, subpixel=True):
        """Model diffraction intensities.

        obj (S, Mo, Ny, Nx), probe (Mp, Y, X), positions (B, 2) device arrays.
        Returns (B, Y, X) real, FFT order.
        """
        idx, ramp, patches = self._prepare(obj, positions, subpixel)
        exit_wave, _ = self._multislice(self.bk.fft2(probe), ramp, patches, keep=False)
        return ops.farfield(self.bk, exit_wave)[0]

    def loss_and_grad(self, obj, probe, positions, batches, get_data, need=(), weight=1.0,
                      subpixel=True):
        """Loss summed over the given batches, and its Wirtinger gradients.

        Parameters
        ----------
        obj : complex (S, Mo, Ny, Nx);  probe : complex (Mp, Y, X)
        positions : float (N, 2), all scan positions (px)
        batches : iterable of int index arrays (NumPy) into the N positions
        get_data : callable(idx) -> real device array (B, Y, X), FFT order
        need : collection of {"obj", "probe", "positions"}
            Which gradients to compute (others are skipped, saving work).
        weight : float
            ``loss_weight``; multiplies the loss and the gradients.
        subpixel : bool
            Use sub-pixel shifts of the probe.

        Returns
        -------
        loss : float (float64 accumulation)
        grads : dict name -> device array, same shape and dtype as the input
            (``positions`` float64 (N, 2), zero for unused patterns).
        """
        bk, xp = self.bk, self.bk.xp
        need = set(need)
        probe_hat = bk.fft2(probe)
        g_obj = xp.zeros((obj.shape[0], obj.shape[1], obj.shape[2] * obj.shape[3]), dtype=obj.dtype) \
            if "obj" in need else None
        g_probe_hat = xp.zeros_like(probe_hat) if "probe" in need else None
        g_pos = xp.zeros(positions.shape, dtype=xp.float64) if "positions" in need else None
        total = xp.zeros((), dtype=xp.float64)
        to_probe = "probe" in need or "positions" in need
        for bidx in batches:
            bidx_dev = xp.asarray(bidx)
            idx, ramp, patches = self._prepare(obj, positions[bidx_dev], subpixel)
            exit_wave, waves = self._multislice(probe_hat, ramp, patches, keep="obj" in need)
            inten, psi_hat = ops.farfield(bk, exit_wave)
            del exit_wave
            val, dldi = loss_and_derivative(self.loss_name, xp, inten, get_data(bidx), self.eps)
            total += val
            if not need:
                continue
            chi = ops.farfield_adjoint(bk, dldi * weight, psi_hat)  # (B, Mo, Mp, Y, X)
            del psi_hat
            for s in range(patches.shape[0] - 1, -1, -1):
                if g_obj is not None:
                    g_patch = xp.sum(waves[s].conj() * chi, axis=2)  # (B, Mo, Y, X)
                    ops.scatter_patches(xp, g_obj[s], g_patch, idx)
                if s == 0 and not to_probe:
                    break
                chi = chi * patches[s][:, :, None].conj()
                if s > 0:
                    chi = ops.propagate_adjoint(bk, chi, self.kernels[s - 1])
            if to_probe:
                chi = xp.sum(chi, axis=1)  # psi_0 was broadcast over object modes
                g_hat = ops.shift_probe_adjoint(bk, chi) * ramp[:, None].conj()
                if g_probe_hat is not None:
                    g_probe_hat += xp.sum(g_hat, axis=0)
                if g_pos is not None:
                    g_pos[bidx_dev] = ops.shift_gradient(xp, g_hat, probe_hat, self.kyx)
        grads = {}
        if g_obj is not None:
            grads["obj"] = g_obj.reshape(obj.shape)
        if g_probe_hat is not None:
            grads["probe"] = bk.ifft2(g_probe_hat).astype(probe.dtype, copy=False)
        if g_pos is not None:
            grads["positions"] = g_pos.astype(positions.dtype, copy=False)
        return float(total) * float(weight), grads
