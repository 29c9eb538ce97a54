"""Figures of the direct estimates: COM vector field, parallax shift map with the fitted model, and
the tcBF / iDPC / SSB phase images.

Each function returns a :class:`matplotlib.figure.Figure` on an Agg canvas (no ``pyplot``, no
backend switch; see :mod:`pypty.output.figures`) and writes a PNG when ``path`` is given.
matplotlib is imported inside the functions: importing pypty does not import it.
"""
from __future__ import annotations

import numpy as np

from .com import rotate_com

__all__ = ["com_figure", "parallax_figure", "phase_images_figure"]


def _new(w, h):
    from ...output.figures import _figure

    return _figure(w, h)


def _finish(fig, path):
    if path is not None:
        from ...output.figures import save_png

        save_png(fig, str(path))
    return fig


def com_figure(com_yx, scan_shape, rotation_deg=0.0, transpose=False, scan_step_A=1.0, every=1, path=None,
               title="centre of mass"):
    """COM vector field as arrows on the scan grid (scan frame, after rotation/transposition).

    Parameters
    ----------
    com_yx : (N, 2) COM in detector px (from :func:`center_of_mass`).
    scan_shape : (Sy, Sx); rotation_deg, transpose : as in :func:`idpc` (the arrows are the COM
        components along the scan axes, (along u, along v), mean removed).
    scan_step_A : Å per scan step (axis units); every : draw every n-th arrow per axis.
    path : optional PNG path.

    Background: |COM| (detector px).  Returns the Figure.
    """
    g = rotate_com(com_yx, scan_shape, rotation_deg, transpose)
    ny, nx = g.shape[:2]
    fig = _new(5.5, 4.5)
    ax = fig.add_subplot()
    ext = (-0.5 * scan_step_A, (nx - 0.5) * scan_step_A, (ny - 0.5) * scan_step_A, -0.5 * scan_step_A)
    im = ax.imshow(np.hypot(g[..., 0], g[..., 1]), cmap="gray", extent=ext, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="|COM| (px)")
    s = slice(None, None, max(1, int(every)))
    yy, xx = np.mgrid[:ny, :nx] * float(scan_step_A)
    # image rows grow downwards (origin upper): a +v component points down, hence -v for quiver's y
    ax.quiver(xx[s, s], yy[s, s], g[s, s, 1], -g[s, s, 0], color="tab:red", angles="xy", pivot="mid")
    ax.set_xlabel("fast axis (Å)" if scan_step_A != 1.0 else "fast axis (scan px)")
    ax.set_ylabel("slow axis (Å)" if scan_step_A != 1.0 else "slow axis (scan px)")
    ax.set_title(f"{title}; rotation {rotation_deg:.2f}°{', transposed' if transpose else ''}", fontsize=9)
    return _finish(fig, path)


def parallax_figure(fit, path=None, scale=None, title="parallax shifts"):
    """Measured (black) and fitted (red) virtual-BF image shifts as arrows on the detector.

    Parameters
    ----------
    fit : dict from :func:`fit_parallax` (``k_inv_A``, ``shifts_px``, ``model_px``, ``C10``, ...).
    scale : quiver scale (scan px of shift per 1/Å of axis); default: the longest arrow is 0.9 times
        the spacing of the detector bins (same scale for both sets).
    path : optional PNG path.

    Arrows are drawn at the detector position k (1/Å, object frame: kx right, ky down as in the
    patterns) with components (shift along the fast axis, along the slow axis) in scan px.
    Returns the Figure.
    """
    k = np.asarray(fit["k_inv_A"], float)
    s = np.asarray(fit["shifts_px"], float)
    m = np.asarray(fit["model_px"], float)
    fig = _new(5.5, 5.0)
    ax = fig.add_subplot()
    if scale is None:   # longest arrow = 0.9 x the spacing of the detector bins
        dist = np.hypot(*(k[:, None, :] - k[None, :, :]).transpose(2, 0, 1)) if len(k) > 1 else np.ones((1, 1))
        spacing = dist[dist > 0].min() if (dist > 0).any() else 1.0
        longest = max(np.hypot(s[:, 0], s[:, 1]).max(), np.hypot(m[:, 0], m[:, 1]).max(), 1e-12)
        scale = longest / (0.9 * spacing)
    kw = dict(angles="xy", scale_units="xy", scale=scale, pivot="tail", width=0.004)
    ax.quiver(k[:, 1], k[:, 0], s[:, 1], s[:, 0], color="k", label="measured", **kw)
    ax.quiver(k[:, 1], k[:, 0], m[:, 1], m[:, 0], color="tab:red", alpha=0.7, label="fit", **kw)
    ax.set_aspect("equal")
    ax.margins(0.12)
    ax.invert_yaxis()
    ax.set_xlabel("k_x (1/Å)")
    ax.set_ylabel("k_y (1/Å)")
    ax.legend(fontsize=8, loc="upper right")
    txt = (f"C10 {fit.get('C10', 0.0):.1f} Å, C12a {fit.get('C12a', 0.0):.1f} Å, C12b {fit.get('C12b', 0.0):.1f} Å\n"
           f"rotation {fit.get('rotation_deg', 0.0):.2f}°, residual {fit.get('residual_px', float('nan')):.3f} px")
    ax.set_title(f"{title}\n{txt}", fontsize=8)
    return _finish(fig, path)


def phase_images_figure(images, pixel_A=None, path=None, cmap="gray"):
    """Side-by-side images (e.g. tcBF, iDPC, SSB phases), one panel each with a colour bar.

    Parameters
    ----------
    images : dict name -> 2D array (or a sequence of (name, array) pairs); e.g.
        ``{"tcBF": fit["tcbf"]["phase"], "iDPC": idpc(...), "SSB": ssb(...)["phase"]}``.
    pixel_A : float or dict name -> float (Å per pixel); axes in px when None.
    path : optional PNG path.  Returns the Figure.
    """
    items = list(images.items()) if isinstance(images, dict) else list(images)
    n = max(len(items), 1)
    fig = _new(3.6 * n, 3.4)
    for i, (name, img) in enumerate(items):
        ax = fig.add_subplot(1, n, i + 1)
        img = np.asarray(img, float)
        p = pixel_A.get(name) if isinstance(pixel_A, dict) else pixel_A
        ext = None if p is None else (0, img.shape[1] * p, img.shape[0] * p, 0)
        im = ax.imshow(img, cmap=cmap, extent=ext, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("Å" if p is not None else "px", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return _finish(fig, path)
