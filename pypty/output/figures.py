"""Summary figures of a reconstruction, as PNG files, without a display.

Every function builds a :class:`matplotlib.figure.Figure` attached to an Agg
canvas (no ``pyplot``, no global backend switch, no shared state), so it works
on headless machines and in threads; :func:`save_png` writes it atomically.

Figures (names used by the ``save_figures`` parameter): ``loss`` (loss per
epoch, log scale), ``object_phase`` (phase summed over slices and each slice,
first object mode), ``probe`` (amplitude of each probe mode in real and
reciprocal space), ``positions`` (initial vs refined scan positions),
``patterns`` (model vs measured diffraction patterns at a few positions, log
scale).

Public API: :data:`FIGURES`, :data:`FIGURE_CHOICES`, :func:`loss_figure`, :func:`object_phase_figure`,
:func:`probe_figure`, :func:`positions_figure`, :func:`patterns_figure`,
:func:`save_png`.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_write_bytes

if TYPE_CHECKING:  # matplotlib is imported by the functions that draw, not by this module
    from matplotlib.figure import Figure

__all__ = ["FIGURES", "FIGURE_CHOICES", "loss_figure", "object_phase_figure", "probe_figure",
           "positions_figure", "patterns_figure", "save_png"]

#: Figure names accepted by ``save_figures``.
FIGURES = ("loss", "object_phase", "probe", "positions", "patterns")
#: Values of ``save_figures`` (the parameter table's choices): a figure name or "all".
FIGURE_CHOICES = FIGURES + ("all",)


def _figure(w, h):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _image(fig, ax, img, title, cmap="gray", extent=None):
    im = ax.imshow(img, cmap=cmap, origin="upper", extent=extent, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8)


def save_png(fig: Figure, path: str) -> str:
    """Render ``fig`` with Agg and write it as PNG atomically; returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def loss_figure(epochs, loss, title="") -> Figure:
    """Loss per epoch (log scale if all positive).

    Parameters
    ----------
    epochs : array_like of int, (E,)
        Epoch numbers (1-based, as in ``loss.csv``).
    loss : array_like of float, (E,)
    """
    fig = _figure(5, 3.5)
    ax = fig.add_subplot()
    loss = np.asarray(loss, dtype=float)
    ax.plot(np.asarray(epochs), loss, ".-", lw=1)
    if loss.size and np.all(loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def object_phase_figure(obj, pixel_size_A=None, crop=None, max_slices=8) -> Figure:
    """Object phase: sum over slices, and each slice (first object mode).

    Parameters
    ----------
    obj : ndarray, complex, (y, x, slices, modes)
    pixel_size_A : (float, float) or None
        (y, x) pixel size in Å for the axes; px if None.
    crop : (y0, y1, x0, x1) or None
        Region shown (e.g. the scanned field of view), px.
    max_slices : int
        At most this many slice panels (evenly chosen).
    """
    obj = np.asarray(obj)
    if crop is not None:
        y0, y1, x0, x1 = crop
        obj = obj[y0:y1, x0:x1]
    phase = np.angle(obj[..., 0])  # (y, x, slices)
    n = phase.shape[2]
    show = np.unique(np.linspace(0, n - 1, min(n, max_slices)).round().astype(int)) if n > 1 else []
    extent = None
    if pixel_size_A is not None:
        extent = (0, phase.shape[1] * pixel_size_A[1], phase.shape[0] * pixel_size_A[0], 0)
    cols = 1 + len(show)
    fig = _figure(3.2 * min(cols, 4), 3.0 * int(np.ceil(cols / 4)))
    axes = fig.subplots(int(np.ceil(cols / 4)), min(cols, 4), squeeze=False).ravel()
    _image(fig, axes[0], phase.sum(axis=2), f"phase, sum of {n} slice(s) (rad)", extent=extent)
    for ax, s in zip(axes[1:], show):
        _image(fig, ax, phase[:, :, s], f"slice {s} (rad)", extent=extent)
    for ax in axes[cols:]:
        ax.set_visible(False)
    return fig


def probe_figure(probe) -> Figure:
    """Probe amplitude of every mode in real space (top) and reciprocal space (bottom).

    Parameters
    ----------
    probe : ndarray, complex, (y, x, modes)
        Real-space probe, centred in its window.  The reciprocal-space
        amplitude is ``|fftshift(fft2(ifftshift(probe)))|`` (zero frequency at
        the centre).
    """
    probe = np.asarray(probe)
    if probe.ndim == 2:
        probe = probe[..., None]
    m = probe.shape[2]
    power = np.sum(np.abs(probe) ** 2, axis=(0, 1))
    fig = _figure(3.0 * min(m, 6), 5.6)
    axes = fig.subplots(2, min(m, 6), squeeze=False)
    for j in range(min(m, 6)):
        pr = probe[:, :, j]
        pk = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(pr), norm="ortho"))
        frac = power[j] / power.sum() if power.sum() > 0 else 0
        _image(fig, axes[0, j], np.abs(pr), f"mode {j} |P(r)| ({100 * frac:.1f}%)", cmap="magma")
        _image(fig, axes[1, j], np.abs(pk), f"mode {j} |P(k)|", cmap="magma")
    return fig


def positions_figure(initial, refined, pixel_size_A=None) -> Figure:
    """Scan positions: initial (grey) and refined (red), (y, x) top-left corners.

    Parameters
    ----------
    initial, refined : ndarray, float, (N, 2), px
    pixel_size_A : (float, float) or None
        Converts px to Å on the axes when given.
    """
    a, b = np.asarray(initial, dtype=float), np.asarray(refined, dtype=float)
    s = np.ones(2) if pixel_size_A is None else np.asarray(pixel_size_A, dtype=float)
    unit = "px" if pixel_size_A is None else "Å"
    fig = _figure(5, 5)
    ax = fig.add_subplot()
    ax.scatter(a[:, 1] * s[1], a[:, 0] * s[0], s=6, c="0.6", label="initial")
    ax.scatter(b[:, 1] * s[1], b[:, 0] * s[0], s=6, c="tab:red", label="refined")
    if a.shape == b.shape:
        rms = float(np.sqrt(np.mean(np.sum(((b - a) * s) ** 2, axis=1))))
        ax.set_title(f"scan positions; rms shift {rms:.3g} {unit}", fontsize=10)
    ax.set_xlabel(f"x ({unit})")
    ax.set_ylabel(f"y ({unit})")
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.legend(fontsize=8)
    return fig


def patterns_figure(measured, model, indices) -> Figure:
    """Measured vs model diffraction patterns (log10(1 + I)), one column per position.

    Parameters
    ----------
    measured, model : ndarray, float, (K, Y, X)
        Zero frequency at the centre, counts.
    indices : sequence of int, (K,)
        Pattern indices shown in the titles.
    """
    measured, model = np.asarray(measured, dtype=float), np.asarray(model, dtype=float)
    k = measured.shape[0]
    fig = _figure(2.8 * k, 5.4)
    axes = fig.subplots(2, k, squeeze=False)
    for j in range(k):
        lo = 0.0
        hi = float(np.log10(1 + max(measured[j].max(), model[j].max(), 0)))
        for row, (img, what) in enumerate(((measured[j], "measured"), (model[j], "model"))):
            im = axes[row, j].imshow(np.log10(1 + np.clip(img, 0, None)), cmap="viridis", vmin=lo, vmax=hi)
            axes[row, j].set_title(f"#{int(indices[j])} {what}", fontsize=9)
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
        fig.colorbar(im, ax=axes[:, j], shrink=0.6, label="log10(1+I)")
    return fig
