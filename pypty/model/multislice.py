"""The multislice forward model of one batch of patterns, its data loss and its Wirtinger gradients.

The model is a composition of the operators of :mod:`pypty.operators` (and
nothing else: the dot-product tests of those operators cover the code that
runs).  For pattern n with window corner ``c_n`` (integer, canvas px) and
sub-pixel remainder ``s_n`` (px)::

    P_n     = modulate(P[k_n], C_n)                  probe spectrum of subscan k_n, CTF C_n   (B, Mp, Y, X)
    psi_0   = modulate(shift_probe(P_n, R(s_n)), E(t_before))
    psi     = scheme(psi_0; transmit(O^w[c_n]), propagate(K(t_inside)))
    psi_e   = modulate(psi, E(t_after))                                                       (B, Mo, Mp, Y, X)
    I       = farfield(psi_e)  or  near_field(psi_e, H_n)
    I_det   = bin_pattern(I, u)                      upsample_pattern u
    I_det   = blur_pattern(I_det, T_sigma)           detector PSF (only when detector_blur_sigma > 0)
    M_n     = c_n * I_det + b                        beam current c_n, static background b    (B, Yd, Xd)

and the data loss compares ``M_n`` with the measured pattern (or, for
``lsq_compressed``, ``compress(M_n, masks)`` with the measured signals).
``C_n = aberration_ctf(A[a_n]) * plate_n`` combines the aberrations of
subscan ``a_n`` (Krivanek coefficients, Å) and a fixed phase plate.  Every
probe mode is combined with every object mode and the intensities add
incoherently.  The steps of the scheme come from :mod:`pypty.model.schemes`.

Gradients: complex arrays get ``G = 2 dL/d(conj z)`` (so
``dL = Re sum conj(G) dz``), real arrays get ``dL/dx``; see
:mod:`pypty.optim`.  Each gradient is checked against central finite
differences in ``tests/model/test_gradients.py``.  The weight of the data
term (``loss_weight``) is applied by the objective
(:mod:`pypty.engine.objective`), not here, except when a *pattern term* is
passed to :meth:`MultisliceModel.loss_and_grad` (a term of the model patterns
that is not a sum over patterns, such as the PACBED term of
:mod:`pypty.regularizers.pacbed`): its derivative joins the data term's
derivative before the adjoint, so the weight is applied per batch there.

Internal layouts (FFT axes last) are those of :mod:`pypty.model.refinables`:
object (S, Mo, Ny, Nx), probe (K, Mp, Y, X), positions (N, 2) (y, x) px,
tilts (N or 1, 6) mrad, beam_current (N,), static_background (Yd, Xd) counts
in FFT order, aberrations_array (A, J) Å.  The object canvas (Ny, Nx) is the
shape of the object passed in: the model holds no geometry that changes
during a run.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import operators as ops
from ..operators.optics import KRIVANEK_NAMES, aberration_phase
from .losses import data_loss
from .refinables import TILT_TYPES
from .schemes import scheme_steps

__all__ = ["MultisliceModel"]


@dataclass(frozen=True)
class MultisliceModel:
    """Everything about the experiment that is not refined (immutable).

    Parameters
    ----------
    bk : pypty.backend.Backend
    window_yx : (int, int)
        Probe window (Y, X) in px (``upsample_pattern`` x the detector shape).
    pixel_size_yx_A : (float, float)
        Reconstruction pixel size in Å.
    wavelength_A : float
        Electron wavelength (Å).
    slice_distances : sequence of float (S,)
        Slab thicknesses in Å.
    complex_dtype : numpy dtype
    propmethod : str
        Splitting scheme, see :mod:`pypty.model.schemes`.
    cutoff, rolloff : float
        Band limit of the propagator (``damping_cutoff_multislice``, ``smooth_rolloff``).
    loss_name : str
        ``algorithm`` (see :mod:`pypty.model.losses`), or "lsq_compressed" with ``masks``.
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
    detector_blur_sigma : float >= 0
        Standard deviation (detector px) of the Gaussian point-spread function
        of the detector, applied to the binned patterns before the beam current
        and the background (:func:`pypty.operators.blur_pattern`, periodic);
        0 = off (the operator is skipped: bit-identical to a model without it).

    Raises
    ------
    ValueError
        Unknown ``propmethod``; ``detector_blur_sigma`` negative or not finite.
    """

    bk: object
    window_yx: tuple
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
    detector_blur_sigma: float = 0.0

    def __post_init__(self):
        xp = self.bk.xp
        cdt = np.dtype(self.complex_dtype)
        rdt = np.finfo(cdt).dtype
        win = tuple(int(v) for v in self.window_yx)
        steps = scheme_steps(self.propmethod, self.slice_distances)
        kernels = {}
        for st in steps:
            if st.kind == "P" and st.distance not in kernels:
                k = ops.fresnel_kernel(win, self.pixel_size_yx_A, self.wavelength_A, st.distance,
                                       self.cutoff, self.rolloff)
                kernels[st.distance] = xp.asarray(k, dtype=cdt)
        basis = None
        if self.n_aberrations:
            b = [aberration_phase(win, self.pixel_size_yx_A, self.acc_voltage_kV, {name: 1.0})
                 for name in KRIVANEK_NAMES[:self.n_aberrations]]
            basis = xp.asarray(np.stack(b), dtype=rdt)  # (J, Y, X), rad per Å
        nf = None
        if self.near_field is not None:
            df = np.atleast_1d(np.asarray(self.near_field["defocus"], dtype=float))
            h = ops.near_field_transfer(win, self.pixel_size_yx_A, self.wavelength_A, df,
                                        float(self.near_field.get("cs", 0.0)),
                                        float(self.near_field.get("alpha", 0.0)))
            nf = xp.asarray(h, dtype=cdt)  # (1 or N, Y, X)
        ry, rx = ops.window_coordinates_A(win, self.pixel_size_yx_A)
        sigma = float(self.detector_blur_sigma)
        if not (np.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"detector_blur_sigma must be a finite number >= 0 (detector px), got "
                             f"{self.detector_blur_sigma!r}")
        det = (win[0] // self.upsample, win[1] // self.upsample)
        blur = xp.asarray(ops.blur_transfer(det, sigma), dtype=rdt) if sigma > 0 else None
        fz = None
        if self.bk.name == "numpy":
            from ..operators import cpu_kernels

            fz = cpu_kernels.kernels() if cpu_kernels.available() else None
        n_px = float(win[0] * win[1])
        derived = dict(
            window_yx=win, detector_yx=det, steps=steps, _fz=fz,
            # the propagator with the scales of an unscaled fft2/ifft2 pair folded in (fused CPU path)
            _kernels_unscaled={d: (k / n_px).astype(cdt) for d, k in kernels.items()} if fz is not None else {},
            _kernels_unscaled_adj={d: (k.conj() / n_px).astype(cdt) for d, k in kernels.items()}
            if fz is not None else {},
            _kyx_px=(xp.asarray(np.fft.fftfreq(win[0])[:, None], dtype=rdt),
                     xp.asarray(np.fft.fftfreq(win[1])[None, :], dtype=rdt)),
            # the same frequencies as 1-D float64 vectors, for the fused position gradient (shift_moments)
            _kyx_px_f64=(np.fft.fftfreq(win[0]).astype(rdt).astype(np.float64),
                         np.fft.fftfreq(win[1]).astype(rdt).astype(np.float64)) if fz is not None else None,
            _kyx_A=(xp.asarray(np.fft.fftfreq(win[0], d=self.pixel_size_yx_A[0])[:, None], dtype=rdt),
                    xp.asarray(np.fft.fftfreq(win[1], d=self.pixel_size_yx_A[1])[None, :], dtype=rdt)),
            _ryx_A=(xp.asarray(ry, dtype=rdt), xp.asarray(rx, dtype=rdt)),
            _kernels=kernels, _basis=basis, _nf=nf, _blur=blur, _cdt=cdt, _rdt=rdt,
            # markers on the device once: a batch gathers them there (no host->device copy per batch)
            _pm_dev=None if self.probe_marker is None else xp.asarray(np.asarray(self.probe_marker)),
            _am_dev=None if self.aberration_marker is None else xp.asarray(np.asarray(self.aberration_marker)))
        for name, value in derived.items():  # derived once; the model is immutable afterwards
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ helpers
    @property
    def compressed(self) -> bool:
        """True for compressed data (virtual-detector signals, ``lsq_compressed``)."""
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
            rows = ab[self._am_dev[bidx_dev]] if self._am_dev is not None \
                else xp.broadcast_to(ab[0], (len(bidx), ab.shape[1]))
            c = ops.aberration_ctf(xp, rows, self._basis, self._cdt)
        if self.phase_plates is not None:
            plate = xp.asarray(self.phase_plates[np.asarray(bidx)], dtype=self._cdt)
            c = plate if c is None else c * plate
        return c

    def _probe_spectra(self, probe_hat, arrays, bidx, bidx_dev):
        """P_n (B or 1, Mp, Y, X) and the CTF used (or None)."""
        pn = probe_hat[self._pm_dev[bidx_dev]] if self._pm_dev is not None else probe_hat[0][None]
        c = self._ctf(arrays, bidx, bidx_dev)
        if c is not None:
            pn = ops.modulate(pn, c)
        return pn, c

    def _powered(self, obj):
        """``{w: O^w}`` on the whole canvas for the transmission exponents of the scheme (w = 1: O itself)."""
        weights = sorted({st.weight for st in self.steps if st.kind == "T"})
        return {w: ops.transmission_power(self.bk.xp, obj, w) for w in weights}

    # ------------------------------------------------------------------ forward
    def _batches(self, batches):
        """The batches as NumPy index arrays and their device copies, made with one host->device copy in all."""
        host = [np.asarray(b) for b in batches]
        if not host:
            return host, []
        flat = self.bk.xp.asarray(np.concatenate(host))
        dev, start = [], 0
        for b in host:
            dev.append(flat[start:start + len(b)])
            start += len(b)
        return host, dev

    def _forward(self, arrays, probe_hat, bidx, subpixel, keep, bidx_dev=None, bk=None):
        """Forward pass of one batch; returns (measured-quantity model, cache for the backward pass).

        ``bidx``: NumPy indices of the batch; ``bidx_dev``: the same on the device (None: copied here);
        ``bk``: the backend of this batch's transforms (None: the model's; see :meth:`loss_and_grad`).
        """
        bk = self.bk if bk is None else bk
        xp = bk.xp
        canvas = arrays["obj"].shape[-2:]
        if bidx_dev is None:
            bidx_dev = xp.asarray(bidx)
        tilts = arrays.get("tilts")
        corners, frac = ops.split_positions(xp, arrays["positions"][bidx_dev], self.window_yx, canvas, subpixel)
        fz = self._fz
        # one gather per distinct transmission exponent (only 1 except for yoshida): (S, B, Mo, Y, X)
        if fz is None:
            idx = ops.patch_indices(xp, corners, self.window_yx, canvas)
            patches = {w: ops.extract_patches(xp, o, idx) for w, o in arrays["_powered"].items()}
        else:  # fused CPU path: the windows are read from the canvas where they are used (no patch arrays)
            idx, patches = corners, None
        ramp = ops.shift_ramp(xp, self._kyx_px, frac, self._cdt)  # (B, Y, X)
        pn, ctf = self._probe_spectra(probe_hat, arrays, bidx, bidx_dev)
        if fz is None:
            psi = ops.shift_probe(bk, pn, ramp)  # (B, Mp, Y, X)
        else:  # fused CPU path: the unitary scale of the inverse transform folded into the ramp
            ramp *= self._rdt.type(1.0 / np.sqrt(ramp.shape[-1] * ramp.shape[-2]))
            psi = bk.ifft2((pn if pn.ndim == 4 else pn[None]) * ramp[:, None], unscaled=True)
        t_before, t_inside, t_after = (self._tilt(tilts, bidx_dev, k) for k in ("before", "inside", "after"))
        e_before = e_after = None
        if t_before is not None:
            e_before = ops.tilt_phase(xp, self._ryx_A, t_before, self.wavelength_A, self._cdt)
            psi = ops.modulate(psi, e_before)
        psi0 = psi
        psi = psi[:, None]  # (B, 1, Mp, Y, X)
        trace = []
        for st in self.steps:
            if st.kind == "T" and fz is not None:
                o = arrays["_powered"][st.weight][st.slice_index]  # (Mo, Ny, Nx) canvas of this slice
                trace.append((st, psi if keep else None, o))
                out = np.empty((psi.shape[0], o.shape[0]) + psi.shape[2:], psi.dtype)
                fz.transmit_windows(out, psi, o, corners)
                psi = out
            elif st.kind == "T":
                u = patches[st.weight][st.slice_index]
                trace.append((st, psi if keep else None, u))
                psi = ops.transmit(psi, u)
            else:
                kern = self._kernels[st.distance]
                if t_inside is not None:
                    kern = kern * ops.tilt_ramp(xp, self._kyx_A, t_inside, st.distance, self._cdt)[:, None, None]
                elif fz is not None:  # fused CPU path: the spectrum is needed by tilt gradients only
                    psi = self._propagate_unscaled(bk, psi, self._kernels_unscaled[st.distance])
                    trace.append((st, None, kern))
                    continue
                psi, w_hat = ops.propagate(bk, psi, kern, keep_spectrum=True)
                trace.append((st, w_hat if keep else None, kern))
        if t_after is not None:
            e_after = ops.tilt_phase(xp, self._ryx_A, t_after, self.wavelength_A, self._cdt)
            psi = ops.modulate(psi, e_after)
        h = None
        if self._nf is not None:
            h = self._nf[bidx_dev] if self._nf.shape[0] > 1 else self._nf
            inten, field_ = ops.near_field(bk, psi, h)
        elif fz is not None:  # fused CPU path: |Psi|^2 summed over modes in one pass, the unitary scale folded in
            field_ = bk.fft2(psi, unscaled=True)
            inten = np.empty((field_.shape[0],) + field_.shape[-2:], self._rdt)
            fz.intensity(inten, field_, self._rdt.type(1.0 / (field_.shape[-1] * field_.shape[-2])))
        else:
            inten, field_ = ops.farfield(bk, psi)
        inten = ops.bin_pattern(xp, inten, self.upsample)
        if self._blur is not None:  # detector PSF; skipped entirely when off
            inten = ops.blur_pattern(bk, inten, self._blur)
        model = inten
        bc = arrays.get("beam_current")
        if bc is not None:
            model = model * bc[bidx_dev][:, None, None].astype(model.dtype, copy=False)
        bg = arrays.get("static_background")
        if bg is not None:
            model = model + (bg * self.background_mask)[None].astype(model.dtype, copy=False)
        if self.compressed:
            model = ops.compress(xp, model, self.masks)
        cache = dict(bidx_dev=bidx_dev, idx=idx, ramp=ramp, pn=pn, ctf=ctf, psi0=psi0,
                     e_before=e_before, e_after=e_after, t_inside=t_inside, trace=trace, psi_exit=psi,
                     field=field_, h=h, inten=inten)
        return model, cache

    def _propagate_unscaled(self, bk, psi, kern_unscaled):
        """:func:`pypty.operators.propagate` on the fused CPU path: unscaled transforms, kernel / (Y X)."""
        h = bk.fft2(psi, unscaled=True)
        self._fz.multiply_kernel(h.reshape((-1,) + h.shape[-2:]), kern_unscaled)
        return bk.ifft2(h, unscaled=True)

    # ------------------------------------------------------------------ public
    def predict(self, arrays, idx, subpixel=True):
        """Model of the measured quantity for patterns ``idx``.

        Parameters
        ----------
        arrays : dict name -> device array (obj, probe and positions
            required, others optional/None; see :mod:`pypty.model.refinables`).
        idx : int array (B,) of pattern indices.

        Returns
        -------
        real array: patterns (B, Yd, Xd) in FFT order, or signals (B, M) for
        compressed data.
        """
        probe_hat = self.bk.fft2(arrays["probe"])
        arrays = dict(arrays, _powered=self._powered(arrays["obj"]))
        return self._forward(arrays, probe_hat, np.asarray(idx), subpixel, keep=False)[0]

    def mean_pattern(self, arrays, batches, subpixel=True):
        """Mean model pattern over the patterns of ``batches`` (forward passes only, no gradients).

        ``Mbar = (1/N) sum_n M_n`` with ``M_n`` the model of the measured
        quantity of pattern n (after binning, detector blur, beam current and
        background; see the module docstring) and N the number of patterns in
        all batches together (a pattern listed twice counts twice, as in the
        data term).

        Parameters
        ----------
        arrays : dict name -> device array (as for :meth:`loss_and_grad`).
        batches : iterable of int index arrays (NumPy), not empty.
        subpixel : bool

        Returns
        -------
        float64 device array (Yd, Xd) in FFT order (counts per pattern), or
        (M,) for compressed data (signals).
        """
        xp = self.bk.xp
        probe_hat = self.bk.fft2(arrays["probe"])
        arrays = dict(arrays, _powered=self._powered(arrays["obj"]))
        acc, n = None, 0
        for bidx, bidx_dev in zip(*self._batches(batches)):
            model = self._forward(arrays, probe_hat, bidx, subpixel, keep=False, bidx_dev=bidx_dev)[0]
            part = xp.sum(model, axis=0, dtype=xp.float64)
            acc = part if acc is None else acc + part
            n += len(bidx)
        if n == 0:
            raise ValueError("mean_pattern: no patterns in the batches")
        return acc / n

    def loss_and_grad(self, arrays, batches, get_data, need=(), subpixel=True, pattern_term=None, loss_name=None):
        """Data loss summed over the given batches and its gradients.

        Parameters
        ----------
        arrays : dict name -> device array (obj, probe, positions required;
            tilts, beam_current, static_background, aberrations_array
            optional: absent or None = not in the model).
        batches : iterable of int index arrays (NumPy) into the N patterns
        get_data : callable(idx) -> real device array (B, Yd, Xd) FFT order
            (or (B, M) signals for ``lsq_compressed``)
        need : collection of array names
            Gradients to compute (others are skipped, saving work).
        subpixel : bool
            Use sub-pixel shifts of the probe.
        pattern_term : object or None
            A term ``R(M_1, ..., M_N)`` of the model patterns of the batches
            that is not a sum of per-pattern losses (the PACBED term,
            :class:`pypty.regularizers.pacbed.PacbedHook`), already evaluated by
            the caller (e.g. from :meth:`mean_pattern`).  It provides
            ``data_weight`` (float w >= 0, the weight of the data term) and
            ``dl(model_batch, bidx)`` -> real device array (B, Yd, Xd), the
            derivative ``dR/dM_n`` for the patterns ``bidx`` of a batch
            (``model_batch``: their model patterns M_n).  Each batch then
            back-propagates ``w dL/dM + dR/dM`` in one adjoint pass, so the
            gradients returned are those of ``w * loss + R``.  The returned
            loss stays the unweighted data loss; R's value is the caller's.
            None (default): the gradients of the data loss alone.
        loss_name : str or None
            Data loss of this evaluation (:mod:`pypty.model.losses`), for a
            loss that changes between epochs; None: the model's ``loss_name``.
            Compressed data always use their own loss.

        Returns
        -------
        loss : float (float64 accumulation), unweighted
        grads : dict name -> device array, same shape as the input
            (``positions`` float64 (N, 2) and per-pattern arrays are zero for
            patterns not in the batches).  Of the data loss, or of
            ``w * loss + R`` with a ``pattern_term``.
        """
        bk = self.bk
        loss = self.loss_name if loss_name is None or self.compressed else loss_name
        need = set(need)
        obj = arrays["obj"]
        probe_hat = bk.fft2(arrays["probe"])
        arrays = dict(arrays, _powered=self._powered(obj))
        work = list(zip(*self._batches(batches)))
        n_workers = self.batch_workers(len(work))
        if self._fz is not None and "obj" in need and work:
            # fused CPU path: the object gradient is accumulated on the bounding box of this evaluation's
            # windows only (zeroing and summing per worker then scale with the scanned area, not the canvas)
            allpos = arrays["positions"][np.concatenate([b for b, _ in work])]
            corners = ops.split_positions(np, allpos, self.window_yx, obj.shape[-2:], subpixel)[0]
            lo = corners.min(axis=0)
            hi = corners.max(axis=0) + np.asarray(self.window_yx)
            arrays["_box"] = (int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1]))
        if n_workers > 1 and "obj" in need:  # each thread has its own object-gradient accumulator
            n_workers = self._workers_for_memory(n_workers, obj, arrays.get("_box"), len(arrays["_powered"]))
        run = (arrays, probe_hat, get_data, need, subpixel, pattern_term, loss)
        if n_workers <= 1:
            total, g = self._accumulate(run, work, bk)
        else:  # batches in threads; each its own accumulators, summed in worker order (deterministic)
            from concurrent.futures import ThreadPoolExecutor

            bk1 = bk.with_workers(1)
            first = get_data(work[0][0])  # a data source may build its host copy on first use: not in a thread
            stop = threading.Event()  # set when the main thread is interrupted: the workers end at the next batch
            with ThreadPoolExecutor(n_workers, thread_name_prefix="pypty-batch") as pool:
                futures = [pool.submit(self._accumulate, run, work[w::n_workers], bk1, first if w == 0 else None,
                                       stop) for w in range(n_workers)]
                try:
                    results = [f.result() for f in futures]
                except BaseException:  # Ctrl-C, a stop signal or a worker's error: do not wait for all batches
                    stop.set()
                    raise
            total, g = results[0]
            for t, gw in results[1:]:
                total = total + t
                for name, val in gw.items():
                    if name == "_powered":
                        for w, v in val.items():
                            g[name][w] += v
                    else:
                        g[name] += val
        return self._finish(arrays, g, need, float(total))

    def batch_workers(self, n_batches: int) -> int:
        """Batches evaluated at once, each in its own thread: ``min(bk.workers, n_batches)`` on NumPy, else 1.

        On the CPU the batches of an evaluation run in ``bk.workers`` threads
        (NumPy, Numba and FFTW release the GIL), each with single-threaded
        transforms and its own accumulators (fewer threads when those would take
        more than a quarter of the host memory), and their sums are added in a fixed order; a single batch
        runs alone with ``bk.workers`` threads per transform.  On a GPU
        batches run one after the other.  The result depends on the number
        of workers only through the order of the additions of the per-worker
        sums (rounding), and is the same bits for the same number.
        """
        if self.bk.name != "numpy" or n_batches < 2:
            return 1
        return max(1, min(int(self.bk.workers), n_batches))

    #: Share of the available host memory the per-thread object-gradient accumulators may take together.
    THREAD_ACCUMULATOR_FRACTION = 0.25

    def _workers_for_memory(self, n_workers, obj, box, n_powers):
        """Fewer batch threads when their object-gradient accumulators would not fit in host memory.

        Each thread accumulates on its own copy of the canvas (or of the windows' bounding box), so
        ``n`` threads need ``n`` copies; at most :attr:`THREAD_ACCUMULATOR_FRACTION` of the available
        host memory is spent on them (at least one thread always runs).
        """
        from ..data.memory import host_memory_bytes

        area = obj.shape[2] * obj.shape[3] if box is None else box[2] * box[3]
        per_thread = obj.shape[0] * obj.shape[1] * area * obj.dtype.itemsize * max(1, n_powers)
        fit = int(self.THREAD_ACCUMULATOR_FRACTION * host_memory_bytes() // max(1, per_thread))
        return max(1, min(n_workers, fit))

    def _zero_grads(self, arrays, probe_hat, need):
        xp = self.bk.xp
        obj = arrays["obj"]
        g = {}
        if "obj" in need:  # accumulated per transmission exponent w, i.e. w.r.t. O^w on the canvas (or the box)
            box = arrays.get("_box")
            area = obj.shape[2] * obj.shape[3] if box is None else box[2] * box[3]
            g["_powered"] = {w: xp.zeros((obj.shape[0], obj.shape[1], area), dtype=obj.dtype)
                             for w in arrays["_powered"]}
        if "probe" in need:
            g["probe"] = xp.zeros_like(probe_hat)
        for name in ("positions", "tilts", "beam_current", "static_background", "aberrations_array"):
            if name in need:
                g[name] = xp.zeros(arrays[name].shape, dtype=xp.float64)
        return g

    def _accumulate(self, run, work, bk, first_data=None, stop=None):
        """Loss (0-d float64) and gradient accumulators of the batches ``work`` [(bidx, bidx_dev), ...].

        ``stop``: a ``threading.Event``; when it is set the remaining batches are skipped (the caller
        is unwinding an exception and discards the result).
        """
        arrays, probe_hat, get_data, need, subpixel, pattern_term, loss = run
        xp = bk.xp
        g = self._zero_grads(arrays, probe_hat, need)
        total = xp.zeros((), dtype=xp.float64)
        keep = bool(need & {"obj", "tilts"})
        for i, (bidx, bidx_dev) in enumerate(work):
            if stop is not None and stop.is_set():
                break
            model, c = self._forward(arrays, probe_hat, bidx, subpixel, keep, bidx_dev, bk=bk)
            data = first_data if (i == 0 and first_data is not None) else get_data(bidx)
            val, dl = data_loss(loss, xp, model, data, self.eps, self.compressed)
            total += val
            if need:
                if pattern_term is not None:  # one adjoint pass for w * data + R
                    w = float(pattern_term.data_weight)
                    dl = (dl if w == 1.0 else w * dl) + pattern_term.dl(model, bidx).astype(dl.dtype, copy=False)
                self._backward(arrays, bidx, c, dl, need, g, bk=bk)
        return total, g

    def _finish(self, arrays, g, need, total):
        """Gradients of the arrays from the accumulators (chain rule through O^w, probe spectrum -> probe)."""
        bk, xp = self.bk, self.bk.xp
        obj, probe = arrays["obj"], arrays["probe"]
        grads = {}
        if "obj" in need:
            gp = g.pop("_powered")
            g_obj = None
            box = arrays.get("_box")
            for w, gw in gp.items():  # chain rule through O^w: G_O = conj(w O^w / O) G_(O^w)
                if box is not None:  # the bounding box of the windows back onto the canvas
                    full = xp.zeros(obj.shape, dtype=obj.dtype)
                    full[..., box[0]:box[0] + box[2], box[1]:box[1] + box[3]] = gw.reshape(obj.shape[:2] + box[2:])
                    gw = full
                gw = ops.transmission_power_grad(xp, obj, arrays["_powered"][w], w, gw.reshape(obj.shape))
                g_obj = gw if g_obj is None else g_obj + gw
            g["obj"] = g_obj
        for name, val in g.items():
            if name == "probe":
                val = bk.ifft2(val).astype(probe.dtype, copy=False)
            elif name != "obj":
                val = val.astype(arrays[name].dtype, copy=False)
            grads[name] = val
        return float(total), grads

    # ------------------------------------------------------------------ backward
    def _backward(self, arrays, bidx, c, dl, need, g, bk=None):
        bk = self.bk if bk is None else bk
        xp = bk.xp
        bidx_dev = c["bidx_dev"]
        if self.compressed:
            dl = ops.compress_adjoint(xp, dl, self.masks)
        if "static_background" in need:
            g["static_background"] += xp.sum(dl, axis=0, dtype=xp.float64) * self.background_mask
        bc = arrays.get("beam_current")
        if "beam_current" in need:
            self._add_rows(xp, g["beam_current"], bidx, bidx_dev,
                           xp.sum(dl * c["inten"], axis=(1, 2), dtype=xp.float64))
        if bc is not None:
            dl = dl * bc[bidx_dev][:, None, None].astype(dl.dtype, copy=False)
        if not need & {"obj", "probe", "positions", "tilts", "aberrations_array"}:
            return
        if self._blur is not None:
            dl = ops.blur_pattern_adjoint(bk, dl, self._blur)
        dl = ops.bin_pattern_adjoint(xp, dl, self.upsample)
        if c["h"] is not None:  # near field: intensity image -> exit wave
            chi = ops.near_field_adjoint(bk, dl, c["field"], c["h"])
        elif self._fz is not None:  # fused CPU path: field is the unscaled spectrum of the forward pass
            field_ = c["field"]
            if dl.dtype != self._rdt or not (dl.flags.writeable and dl.flags.c_contiguous):
                dl = np.array(dl, dtype=self._rdt)  # scaled in place below (dl is otherwise this batch's own)
            self._fz.scale_by_pattern(field_, dl, self._rdt.type(2.0 / (field_.shape[-1] * field_.shape[-2])))
            chi = bk.ifft2(field_, unscaled=True)  # (B, Mo, Mp, Y, X)
        else:
            chi = ops.farfield_adjoint(bk, dl, c["field"])  # (B, Mo, Mp, Y, X)
        if c["e_after"] is not None:
            if "tilts" in need:
                self._add_tilt(g, bidx, bidx_dev, "after",
                               ops.tilt_phase_gradient(xp, chi, c["psi_exit"], self._ryx_A, self.wavelength_A))
            chi = ops.modulate_adjoint(chi, c["e_after"])
        to_probe = bool(need & {"probe", "positions", "aberrations_array", "tilts"})
        fz, canvas = self._fz, arrays["obj"].shape[-2:]
        for i in range(len(c["trace"]) - 1, -1, -1):
            st, saved, op = c["trace"][i]
            if st.kind == "T" and fz is not None:  # fused CPU path: no temporaries, chi updated in place
                if "obj" in need:
                    acc = g["_powered"][st.weight][st.slice_index]
                    box = arrays.get("_box")
                    if box is None:
                        fz.scatter_conj_product(acc.reshape(acc.shape[0], *canvas), chi, saved, c["idx"])
                    else:
                        fz.scatter_conj_product(acc.reshape(acc.shape[0], box[2], box[3]), chi, saved,
                                                c["idx"] - np.array(box[:2]))
                if i == 0 and not to_probe:
                    return
                fz.multiply_conj_windows(chi, op, c["idx"])  # op: the slice's canvas
            elif st.kind == "T":
                if "obj" in need:  # scattered before the wave's adjoint: the temporaries never coexist
                    ops.scatter_patches(xp, g["_powered"][st.weight][st.slice_index],
                                        ops.transmit_patches_adjoint(xp, chi, saved), c["idx"])
                if i == 0 and not to_probe:
                    return
                chi = ops.transmit_adjoint(chi, op)
            elif fz is not None and c["t_inside"] is None:
                chi = self._propagate_unscaled(bk, chi, self._kernels_unscaled_adj[st.distance])
            else:
                inside = "tilts" in need and c["t_inside"] is not None
                chi, g_hat = ops.propagate_adjoint(bk, chi, op, keep_spectrum=True)
                if inside:
                    self._add_tilt(g, bidx, bidx_dev, "inside",
                                   ops.tilt_gradient(xp, g_hat, saved, self._kyx_A, st.distance))
        chi = chi[:, 0] if chi.shape[1] == 1 else xp.sum(chi, axis=1)  # psi_0 was broadcast over object modes
        if c["e_before"] is not None:
            if "tilts" in need:
                self._add_tilt(g, bidx, bidx_dev, "before",
                               ops.tilt_phase_gradient(xp, chi, c["psi0"], self._ryx_A, self.wavelength_A))
            chi = ops.modulate_adjoint(chi, c["e_before"])
        pn = c["pn"]
        if fz is None:
            g_pn = ops.shift_probe_adjoint(bk, chi, c["ramp"])  # gradient w.r.t. P_n (B, Mp, Y, X)
        else:  # fused CPU path: the ramp carries the unitary scale (see _forward)
            g_pn = bk.fft2(chi, unscaled=True)
            fz.multiply_conj_patches(g_pn[:, None], c["ramp"][:, None])
        if "positions" in need and fz is not None:
            out = np.empty((g_pn.shape[0], 2))
            fz.shift_moments(out, g_pn, pn if pn.ndim == 4 else pn[None], *self._kyx_px_f64, 2 * np.pi)
            self._add_rows(xp, g["positions"], bidx, bidx_dev, out)
        elif "positions" in need:
            self._add_rows(xp, g["positions"], bidx, bidx_dev, ops.shift_gradient(xp, g_pn, pn, self._kyx_px))
        if "aberrations_array" in need:
            ga = ops.aberration_gradient(xp, g_pn, pn, self._basis)  # (B, J)
            rows = self.aberration_marker[bidx] if self.aberration_marker is not None else np.zeros(len(bidx), int)
            ops.scatter_rows(xp, g["aberrations_array"], rows, ga)
        if "probe" in need:
            if c["ctf"] is not None:
                g_pn = ops.modulate_adjoint(g_pn, c["ctf"])
            if self.probe_marker is not None:
                ops.scatter_rows(xp, g["probe"], self.probe_marker[bidx], g_pn)
            else:
                g["probe"][0] += xp.sum(g_pn, axis=0)

    @staticmethod
    def _add_rows(xp, acc, bidx, bidx_dev, vals):
        """``acc[bidx] += vals`` with repeated patterns summed (a sequence may list a pattern twice).

        Distinct indices (the usual case): one indexed add.  Repeats: rows summed in increasing row
        order (:func:`pypty.operators.scatter_rows`, deterministic on every backend).
        """
        bidx = np.asarray(bidx)
        if np.unique(bidx).size == bidx.size:
            acc[bidx_dev] += vals
        else:
            ops.scatter_rows(xp, acc, bidx, vals)

    def _add_tilt(self, g, bidx, bidx_dev, kind, gt):
        a, b = TILT_TYPES[kind]
        if g["tilts"].shape[0] > 1:
            self._add_rows(self.bk.xp, g["tilts"][:, a:b], bidx, bidx_dev, gt)
        else:
            g["tilts"][0, a:b] += gt.sum(axis=0)
