"""The multislice forward model, its loss and its Wirtinger gradients.

Composes the operators of :mod:`pypty.operators`, :mod:`pypty.propagation`
and :mod:`pypty.detector`.  For pattern n with window corner ``c_n``
(integer, canvas px) and sub-pixel remainder ``s_n`` (px)::

    P_n     = fft2(probe[k_n]) * C_n                 probe of subscan k_n, CTF C_n   (B, Mp, Y, X)
    psi_0   = ifft2(P_n * R(s_n)) * E(t_before)      shift, tilt before the specimen
    psi     = scheme(psi_0; O[c_n], t_inside)        multislice / better_multislice / yoshida
    psi_e   = psi * E(t_after)                       tilt after the specimen         (B, Mo, Mp, Y, X)
    I       = sum_{Mo,Mp} |fft2(psi_e)|^2            far field (or |ifft2(fft2(psi_e) H_n)|^2 near field)
    I_det   = bin_u(I)                               upsample_pattern u
    M_n     = c_n * I_det + b                        beam current c_n, static background b (B, Yd, Xd)

and the loss compares ``M_n`` with the measured pattern (or, for
``lsq_compressed``, the virtual-detector signals ``masks . M_n`` with the
measured signals).  ``C_n = exp(-i chi(k; A[a_n])) * plate_n`` combines the
aberrations of subscan ``a_n`` (Krivanek coefficients, Å) and a fixed phase
plate.  Every probe mode is combined with every object mode and the
intensities add incoherently.

Gradients: complex arrays get ``G = 2 dL/d(conj z)`` (so
``dL = Re sum conj(G) dz``), real arrays get ``dL/dx``; see
:mod:`pypty.optimizer`.  Each gradient is checked against central finite
differences in ``tests/test_gradients.py``.

Internal layouts (FFT axes last): object (S, Mo, Ny, Nx), probe (K, Mp, Y, X),
positions (N, 2) (y, x) px, tilts (N or 1, 6) mrad
(y, x before; y, x inside; y, x after), beam_current (N,), static_background
(Yd, Xd) counts in FFT order, aberrations_array (A, J) Å in the order of
:data:`pypty.probe.KRIVANEK_NAMES`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import detector as det
from . import operators as ops
from . import propagation as prop
from .losses import loss_and_derivative
from .probe import KRIVANEK_NAMES, aberration_phase

__all__ = ["MultisliceModel", "split_positions", "ARRAY_NAMES", "TILT_TYPES", "tilt_types_for_mode"]

#: Names of the arrays the model takes and can differentiate.
ARRAY_NAMES = ("obj", "probe", "positions", "tilts", "beam_current", "static_background", "aberrations_array")

#: Column pairs of the tilts array.
TILT_TYPES = {"before": (0, 2), "inside": (2, 4), "after": (4, 6)}

_TILT_MODES = {0: ("inside",), 1: ("after",), 2: ("before",), 3: ("inside", "after"),
               4: ("before", "inside", "after")}


def tilt_types_for_mode(tilt_mode: int) -> tuple:
    """Tilt types used by ``tilt_mode`` (0 inside, 1 after, 2 before, 3 inside+after, 4 all)."""
    try:
        return _TILT_MODES[int(tilt_mode)]
    except KeyError:
        raise ValueError(f"tilt_mode must be one of {sorted(_TILT_MODES)}, got {tilt_mode!r}") from None


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
class MultisliceModel:
    """Static description of the experiment (everything that is not refined).

    Parameters
    ----------
    bk : pypty.backend.Backend
    window_yx : (int, int)
        Probe window (Y, X) in px (``upsample_pattern`` x the detector shape).
    canvas_yx : (int, int)
        Object canvas (Ny, Nx) in px.
    pixel_size_yx_A : (float, float)
        Reconstruction pixel size in Å.
    wavelength_A : float
        Electron wavelength (Å).
    slice_distances : sequence of float (S,)
        Slab thicknesses in Å.
    complex_dtype : numpy dtype
    propmethod : str
        Splitting scheme, see :mod:`pypty.propagation`.
    cutoff, rolloff : float
        Band limit of the propagator (``damping_cutoff_multislice``, ``smooth_rolloff``).
    loss_name : str
        ``algorithm`` (see :mod:`pypty.losses`), or "lsq_compressed" with ``masks``.
    eps : float
        Loss regulariser in counts.
    tilt_types : tuple of {"before", "inside", "after"}
        Tilt types in the model (from ``tilt_mode``).
    probe_marker, aberration_marker : int array (N,) or None
        Probe subscan and aberration row of each pattern.
    n_aberrations : int
        Columns J of the aberrations array (0: none).
    acc_voltage_kV : float
        For the aberration basis.
    phase_plates : ndarray complex (N, Y, X) FFT order, or None
    near_field : dict or None
        ``{"defocus": (N,) or (1,) Å, "cs": Å, "alpha": mrad}`` for
        ``recon_type="near_field"``.
    upsample : int
        ``upsample_pattern``.
    background_mask : device array (Yd, Xd) real or None
        Detector pixels where a static background can exist (FFT order).
    masks : device array (M, Yd, Xd) real or None
        Virtual detectors (FFT order) for ``lsq_compressed``.
    """

    bk: object
    window_yx: tuple
    canvas_yx: tuple
    pixel_size_yx_A: tuple
    wavelength_A: float
    slice_distances: tuple
    complex_dtype: np.dtype
    propmethod: str = "multislice"
    cutoff: float = 2 / 3
    rolloff: float = 0.0
    loss_name: str = "lsq_sqrt"
    eps: float = 1e-6
    tilt_types: tuple = ()
    probe_marker: Optional[np.ndarray] = None
    aberration_marker: Optional[np.ndarray] = None
    n_aberrations: int = 0
    acc_voltage_kV: float = 200.0
    phase_plates: Optional[np.ndarray] = None
    near_field: Optional[dict] = None
    upsample: int = 1
    background_mask: object = None
    masks: object = None
    steps: list = field(init=False)

    def __post_init__(self):
        xp = self.bk.xp
        cdt = np.dtype(self.complex_dtype)
        rdt = np.finfo(cdt).dtype
        win = tuple(int(v) for v in self.window_yx)
        self.window_yx = win
        self.detector_yx = (win[0] // self.upsample, win[1] // self.upsample)
        self.steps = prop.scheme_steps(self.propmethod, self.slice_distances)
        self._kyx_px = (xp.asarray(np.fft.fftfreq(win[0])[:, None], dtype=rdt),
                        xp.asarray(np.fft.fftfreq(win[1])[None, :], dtype=rdt))
        self._kyx_A = (xp.asarray(np.fft.fftfreq(win[0], d=self.pixel_size_yx_A[0])[:, None], dtype=rdt),
                       xp.asarray(np.fft.fftfreq(win[1], d=self.pixel_size_yx_A[1])[None, :], dtype=rdt))
        ry, rx = det.window_coordinates_A(win, self.pixel_size_yx_A)
        self._ryx_A = (xp.asarray(ry, dtype=rdt), xp.asarray(rx, dtype=rdt))
        self._kernels = {}
        for st in self.steps:
            if st.kind == "P" and st.distance not in self._kernels:
                k = ops.fresnel_kernel(win, self.pixel_size_yx_A, self.wavelength_A, st.distance,
                                       self.cutoff, self.rolloff)
                self._kernels[st.distance] = xp.asarray(k, dtype=cdt)
        self._basis = None
        if self.n_aberrations:
            basis = [aberration_phase(win, self.pixel_size_yx_A, self.acc_voltage_kV, {name: 1.0})
                     for name in KRIVANEK_NAMES[:self.n_aberrations]]
            self._basis = xp.asarray(np.stack(basis), dtype=rdt)  # (J, Y, X), rad per Å
        self._nf = None
        if self.near_field is not None:
            nf = self.near_field
            df = np.atleast_1d(np.asarray(nf["defocus"], dtype=float))
            h = det.near_field_transfer(win, self.pixel_size_yx_A, self.wavelength_A, df,
                                        float(nf.get("cs", 0.0)), float(nf.get("alpha", 0.0)))
            self._nf = xp.asarray(h, dtype=cdt)  # (1 or N, Y, X)
        self._cdt, self._rdt = cdt, rdt

    # ------------------------------------------------------------------ helpers
    @property
    def compressed(self) -> bool:
        return self.masks is not None

    def _tilt(self, tilts, bidx_dev, kind):
        if tilts is None or kind not in self.tilt_types:
            return None
        a, b = TILT_TYPES[kind]
        t = tilts[:, a:b]
        return t[bidx_dev] if t.shape[0] > 1 else self.bk.xp.broadcast_to(t, (bidx_dev.shape[0], 2))

    def _ctf(self, arrays, bidx, bidx_dev):
        """Per-pattern factor C_n (B, Y, X) or None."""
        xp = self.bk.xp
        c = None
        ab = arrays.get("aberrations_array")
        if self._basis is not None and ab is not None:
            rows = ab[xp.asarray(self.aberration_marker[bidx])] if self.aberration_marker is not None \
                else xp.broadcast_to(ab[0], (len(bidx), ab.shape[1]))
            chi = xp.tensordot(rows.astype(self._rdt, copy=False), self._basis, axes=(1, 0))
            c = xp.exp(-1j * chi).astype(self._cdt)
        if self.phase_plates is not None:
            plate = xp.asarray(self.phase_plates[np.asarray(bidx)], dtype=self._cdt)
            c = plate if c is None else c * plate
        return c

    def _probe_spectra(self, probe_hat, arrays, bidx, bidx_dev):
        """P_n (B or 1, Mp, Y, X) and the CTF used (or None)."""
        xp = self.bk.xp
        if self.probe_marker is not None:
            pn = probe_hat[xp.asarray(self.probe_marker[bidx])]
        else:
            pn = probe_hat[0][None]
        c = self._ctf(arrays, bidx, bidx_dev)
        if c is not None:
            pn = pn * c[:, None]
        return pn, c

    # ------------------------------------------------------------------ forward
    def _forward(self, arrays, probe_hat, bidx, subpixel, keep):
        """Forward pass of one batch; returns (measured-quantity model, cache for the backward pass)."""
        bk, xp = self.bk, self.bk.xp
        bidx_dev = xp.asarray(bidx)
        tilts = arrays.get("tilts")
        corners, frac = split_positions(xp, arrays["positions"][bidx_dev], self.window_yx, self.canvas_yx,
                                        subpixel)
        idx = ops.patch_indices(xp, corners, self.window_yx, self.canvas_yx)
        # one gather per distinct transmission exponent (only 1 except for yoshida): (S, B, Mo, Y, X)
        patches = {w: ops.extract_patches(xp, o, idx) for w, o in arrays["_powered"].items()}
        ramp = ops.shift_ramp(xp, self._kyx_px, frac, self._cdt)  # (B, Y, X)
        pn, ctf = self._probe_spectra(probe_hat, arrays, bidx, bidx_dev)
        psi = bk.ifft2(pn * ramp[:, None])  # (B, Mp, Y, X)
        t_before, t_inside, t_after = (self._tilt(tilts, bidx_dev, k) for k in ("before", "inside", "after"))
        e_before = e_after = None
        if t_before is not None:
            e_before = det.tilt_phase(xp, self._ryx_A, t_before, self.wavelength_A, self._cdt)
            psi = psi * e_before[:, None]
        psi0 = psi
        psi = psi[:, None]  # (B, 1, Mp, Y, X)
        trace = []
        for st in self.steps:
            if st.kind == "T":
                u = patches[st.weight][st.slice_index]
                trace.append((st, psi if keep else None, u))
                psi = psi * u[:, :, None]
            else:
                kern = self._kernels[st.distance]
                if t_inside is not None:
                    kern = kern * prop.tilt_ramp(xp, self._kyx_A, t_inside, st.distance, self._cdt)[:, None, None]
                w_hat = bk.fft2(psi) * kern
                trace.append((st, w_hat if keep else None, kern))
                psi = bk.ifft2(w_hat)
        if t_after is not None:
            e_after = det.tilt_phase(xp, self._ryx_A, t_after, self.wavelength_A, self._cdt)
            psi = psi * e_after[:, None, None]
        psi_hat = bk.fft2(psi)
        h = None
        if self._nf is not None:
            h = self._nf[bidx_dev] if self._nf.shape[0] > 1 else self._nf
            field_ = bk.ifft2(psi_hat * h[:, None, None])
            inten = xp.fft.ifftshift(xp.sum(field_.real**2 + field_.imag**2, axis=(1, 2)), axes=(-2, -1))
        else:
            field_ = psi_hat
            inten = xp.sum(field_.real**2 + field_.imag**2, axis=(1, 2))
        inten = det.bin_pattern(xp, inten, self.upsample)
        model = inten
        bc = arrays.get("beam_current")
        if bc is not None:
            model = model * bc[bidx_dev][:, None, None].astype(model.dtype, copy=False)
        bg = arrays.get("static_background")
        if bg is not None:
            model = model + (bg * self.background_mask)[None].astype(model.dtype, copy=False)
        if self.compressed:
            model = det.compress(xp, model, self.masks)
        cache = dict(bidx_dev=bidx_dev, idx=idx, ramp=ramp, pn=pn, ctf=ctf, psi0=psi0,
                     e_before=e_before, e_after=e_after, t_inside=t_inside, trace=trace, psi_exit=psi,
                     field=field_, h=h, inten=inten)
        return model, cache

    # ------------------------------------------------------------------ public
    def predict(self, arrays, idx, subpixel=True):
        """Model of the measured quantity for patterns ``idx``.

        Parameters
        ----------
        arrays : dict name -> device array (see :data:`ARRAY_NAMES`; obj,
            probe and positions required, others optional/None).
        idx : int array (B,) of pattern indices.

        Returns
        -------
        real array: patterns (B, Yd, Xd) in FFT order, or signals (B, M) for
        compressed data.
        """
        probe_hat = self.bk.fft2(arrays["probe"])
        arrays = dict(arrays, _powered=self._powered(arrays["obj"]))
        return self._forward(arrays, probe_hat, np.asarray(idx), subpixel, keep=False)[0]

    def loss_and_grad(self, arrays, batches, get_data, need=(), weight=1.0, subpixel=True):
        """Loss summed over the given batches and its gradients.

        Parameters
        ----------
        arrays : dict name -> device array (obj, probe, positions required;
            tilts, beam_current, static_background, aberrations_array
            optional: absent or None = not in the model).
        batches : iterable of int index arrays (NumPy) into the N patterns
        get_data : callable(idx) -> real device array (B, Yd, Xd) FFT order
            (or (B, M) signals for ``lsq_compressed``)
        need : collection of names in :data:`ARRAY_NAMES`
            Gradients to compute (others are skipped, saving work).
        weight : float
            ``loss_weight``; multiplies the loss and the gradients.
        subpixel : bool
            Use sub-pixel shifts of the probe.

        Returns
        -------
        loss : float (float64 accumulation)
        grads : dict name -> device array, same shape as the input
            (``positions`` float64 (N, 2) and per-pattern arrays are zero for
            patterns not in the batches).
        """
        bk, xp = self.bk, self.bk.xp
        need = set(need)
        obj, probe = arrays["obj"], arrays["probe"]
        probe_hat = bk.fft2(probe)
        arrays = dict(arrays, _powered=self._powered(obj))
        g = {}
        if "obj" in need:  # accumulated per transmission exponent w, i.e. w.r.t. O^w on the canvas
            flat = (obj.shape[0], obj.shape[1], obj.shape[2] * obj.shape[3])
            g["_powered"] = {w: xp.zeros(flat, dtype=obj.dtype) for w in arrays["_powered"]}
        if "probe" in need:
            g["probe"] = xp.zeros_like(probe_hat)
        for name in ("positions", "tilts", "beam_current", "static_background", "aberrations_array"):
            if name in need:
                g[name] = xp.zeros(arrays[name].shape, dtype=xp.float64)
        total = xp.zeros((), dtype=xp.float64)
        keep = bool(need & {"obj", "tilts"})
        for bidx in batches:
            bidx = np.asarray(bidx)
            model, c = self._forward(arrays, probe_hat, bidx, subpixel, keep)
            val, dl = self._loss(model, get_data(bidx))
            total += val
            if need:
                self._backward(arrays, probe_hat, bidx, c, dl * weight, need, g)
        grads = {}
        if "obj" in need:
            gp = g.pop("_powered")
            g_obj = None
            for w, gw in gp.items():  # chain rule through O^w: G_O = conj(w O^w / O) G_(O^w)
                gw = gw.reshape(obj.shape)
                if w != 1.0:
                    gw = prop.transmission_power_grad(xp, obj, arrays["_powered"][w], w, gw)
                g_obj = gw if g_obj is None else g_obj + gw
            g["obj"] = g_obj
        for name, val in g.items():
            if name == "probe":
                val = bk.ifft2(val).astype(probe.dtype, copy=False)
            elif name != "obj":
                val = val.astype(arrays[name].dtype, copy=False)
            grads[name] = val
        return float(total) * float(weight), grads

    def _powered(self, obj):
        """``{w: O^w}`` on the whole canvas for the transmission exponents of the scheme (w = 1: O itself)."""
        weights = sorted({st.weight for st in self.steps if st.kind == "T"})
        return {w: prop.transmission_power(self.bk.xp, obj, w) for w in weights}

    def _loss(self, model, data):
        xp = self.bk.xp
        if self.compressed:
            r = model - data
            return xp.sum(r * r, dtype=xp.float64), 2.0 * r
        return loss_and_derivative(self.loss_name, xp, model, data, self.eps)

    # ------------------------------------------------------------------ backward
    def _backward(self, arrays, probe_hat, bidx, c, dl, need, g):
        bk, xp = self.bk, self.bk.xp
        bidx_dev = c["bidx_dev"]
        if self.compressed:
            dl = det.compress_adjoint(xp, dl, self.masks)
        if "static_background" in need:
            g["static_background"] += xp.sum(dl, axis=0, dtype=xp.float64) * self.background_mask
        bc = arrays.get("beam_current")
        if "beam_current" in need:
            g["beam_current"][bidx_dev] += xp.sum(dl * c["inten"], axis=(1, 2), dtype=xp.float64)
        if bc is not None:
            dl = dl * bc[bidx_dev][:, None, None].astype(dl.dtype, copy=False)
        if not need & {"obj", "probe", "positions", "tilts", "aberrations_array"}:
            return
        dl = det.bin_pattern_adjoint(xp, dl, self.upsample)
        if c["h"] is not None:  # near field: intensity image -> exit wave
            d_img = xp.fft.fftshift(dl, axes=(-2, -1))
            chi = bk.ifft2(bk.fft2(2 * d_img[:, None, None] * c["field"]) * c["h"].conj()[:, None, None])
        else:
            chi = ops.farfield_adjoint(bk, dl, c["field"])  # (B, Mo, Mp, Y, X)
        if c["e_after"] is not None:
            if "tilts" in need:
                self._add_tilt(g, bidx_dev, "after",
                               det.tilt_phase_gradient(xp, chi, c["psi_exit"], self._ryx_A, self.wavelength_A))
            chi = chi * c["e_after"].conj()[:, None, None]
        to_probe = bool(need & {"probe", "positions", "aberrations_array", "tilts"})
        idx = c["idx"]
        for i in range(len(c["trace"]) - 1, -1, -1):
            st, saved, op = c["trace"][i]
            if st.kind == "T":
                if "obj" in need:
                    g_u = xp.sum(saved.conj() * chi, axis=2)  # (B, Mo, Y, X)
                    ops.scatter_patches(xp, g["_powered"][st.weight][st.slice_index], g_u, idx)
                if i == 0 and not to_probe:
                    return
                chi = chi * op.conj()[:, :, None]
            else:
                g_hat = bk.fft2(chi)
                if "tilts" in need and c["t_inside"] is not None:
                    self._add_tilt(g, bidx_dev, "inside",
                                   prop.tilt_gradient(xp, g_hat, saved, self._kyx_A, st.distance))
                chi = bk.ifft2(g_hat * op.conj())
        if not to_probe:
            return
        chi = xp.sum(chi, axis=1)  # psi_0 was broadcast over object modes -> (B, Mp, Y, X)
        if c["e_before"] is not None:
            if "tilts" in need:
                self._add_tilt(g, bidx_dev, "before",
                               det.tilt_phase_gradient(xp, chi, c["psi0"], self._ryx_A, self.wavelength_A))
            chi = chi * c["e_before"].conj()[:, None]
        g_pn = bk.fft2(chi) * c["ramp"].conj()[:, None]  # gradient w.r.t. P_n (B, Mp, Y, X)
        pn = c["pn"]
        if "positions" in need:
            g["positions"][bidx_dev] = ops.shift_gradient(xp, g_pn, pn, self._kyx_px)
        if "aberrations_array" in need:
            q = xp.sum((g_pn.conj() * pn).imag, axis=1)  # (B, Y, X): Re(conj(G)(-i chi_j) P) = chi_j Im(conj(G) P)
            ga = xp.tensordot(q, self._basis, axes=((1, 2), (1, 2))).astype(xp.float64)  # (B, J)
            rows = self.aberration_marker[bidx] if self.aberration_marker is not None else np.zeros(len(bidx), int)
            _scatter_rows(xp, g["aberrations_array"], rows, ga)
        if "probe" in need:
            if c["ctf"] is not None:
                g_pn = g_pn * c["ctf"].conj()[:, None]
            if self.probe_marker is not None:
                _scatter_rows(xp, g["probe"], self.probe_marker[bidx], g_pn)
            else:
                g["probe"][0] += xp.sum(g_pn, axis=0)

    def _add_tilt(self, g, bidx_dev, kind, gt):
        a, b = TILT_TYPES[kind]
        if g["tilts"].shape[0] > 1:
            g["tilts"][bidx_dev, a:b] += gt
        else:
            g["tilts"][0, a:b] += gt.sum(axis=0)


def _scatter_rows(xp, acc, rows, vals):
    """acc[rows[i]] += vals[i] with repeated rows summed (rows: NumPy ints)."""
    rows = np.asarray(rows)
    for r in np.unique(rows):
        sel = xp.asarray(np.nonzero(rows == r)[0])
        acc[int(r)] += xp.sum(vals[sel], axis=0)
