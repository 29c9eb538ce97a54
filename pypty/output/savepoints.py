"""Save points of a run: results file, convergence summary, figures and TIFF exports.

:class:`SavePoints` is driven by :func:`pypty.iterative.run`: after every
epoch :meth:`SavePoints.epoch_done` records the loss row; when the
epoch-dependent cadence ``save_results_every`` fires, :meth:`SavePoints.save`
writes ``results.h5`` (atomically), appends a convergence row and, when
``save_figures_every`` fires, figures (``figures/``) and TIFF files
(``tiff/``).  After the first epoch of a run ``results.h5`` is also written
(:meth:`SavePoints.restart_point_due`; no convergence row, no figures), so a
state that ``restart_from`` accepts exists from the first epoch on, whatever
the cadence (unless ``save_results_every`` is 0 there: only at the end).  At
the end, and when the loop is interrupted (Ctrl-C, SIGTERM or an exception),
a final save is made.

Convergence summary (one row per save point, changes since the previous save
point, the first one against the initial arrays), after the peer's monitor
(PtyRAD ``convergence_monitor``): within the scanned region of the projected
object (product over slices, first mode) pixels whose phase is below the
``convergence_percentiles[0]`` percentile form the *background* and above
``[1]`` the *signal*; ``object_phase_bg`` / ``object_phase_fg`` are the mean
|wrapped phase change| (rad) and ``object_amplitude_bg`` / ``_fg`` the mean
|amplitude change| over them; ``probe_intensity`` is ``sum|dI| / sum I`` of the
mode-summed probe intensity; ``positions_rms_px`` the RMS displacement of the
scan positions (px).  Shapes that changed give NaN.

Public API: :class:`SavePoints`, :func:`convergence_row`.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .. import __version__
from ..model.refinables import component_name
from ..parameters import to_jsonable
from ..parameters.schedule import every, resolve
from .exports import export_tiffs, scan_crop
from .provenance import initial_history, new_uid, now, run_entry, with_run
from .results import RESULTS_NAME, write_results

__all__ = ["SavePoints", "convergence_row"]

_LOSS_COLUMNS = ("epoch", "loss", "step", "accepted", "evaluations", "wall_time_s", "refined")


def _projected(obj):
    """Projected transmission (y, x) of the first object mode, user layout (y, x, slices, modes)."""
    return np.prod(obj[..., 0], axis=2)


def convergence_row(old: dict, new: dict, crop, percentiles=(15.0, 85.0)) -> dict:
    """Changes between two snapshots (see the module docstring).

    Parameters
    ----------
    old, new : dict
        ``obj`` complex (y, x, slices, modes), ``probe`` complex (y, x,
        modes), ``positions`` float (N, 2) px.
    crop : (y0, y1, x0, x1)
        Scanned region in the object canvas, px.
    percentiles : (float, float)
        Background / signal thresholds on the current phase, percent.

    Returns
    -------
    dict of float
        object_phase_bg, object_phase_fg (rad), object_amplitude_bg,
        object_amplitude_fg, probe_intensity (relative), positions_rms_px.
    """
    nan = float("nan")
    row = dict(object_phase_bg=nan, object_phase_fg=nan, object_amplitude_bg=nan, object_amplitude_fg=nan,
               probe_intensity=nan, positions_rms_px=nan)
    if old["obj"].shape == new["obj"].shape:
        y0, y1, x0, x1 = crop
        a, b = _projected(old["obj"])[y0:y1, x0:x1], _projected(new["obj"])[y0:y1, x0:x1]
        ph = np.angle(b)
        lo, hi = np.percentile(ph, percentiles)
        dph = np.abs(np.angle(b * np.conj(a)))
        damp = np.abs(np.abs(b) - np.abs(a))
        for tag, mask in (("bg", ph <= lo), ("fg", ph >= hi)):
            if mask.any():
                row[f"object_phase_{tag}"] = float(dph[mask].mean())
                row[f"object_amplitude_{tag}"] = float(damp[mask].mean())
    if old["probe"].shape == new["probe"].shape:
        ia = np.sum(np.abs(old["probe"]) ** 2, axis=tuple(range(2, old["probe"].ndim)))
        ib = np.sum(np.abs(new["probe"]) ** 2, axis=tuple(range(2, new["probe"].ndim)))
        row["probe_intensity"] = float(np.abs(ib - ia).sum() / max(ib.sum(), 1e-300))
    if old["positions"].shape == new["positions"].shape:
        row["positions_rms_px"] = float(np.sqrt(np.mean(np.sum((new["positions"] - old["positions"]) ** 2, axis=1))))
    return row


class SavePoints:
    """Results, convergence, figures and exports of one run (see the module docstring).

    Parameters
    ----------
    p : dict
        Validated parameters.
    setup : pypty.model.setup.Setup
        The static problem (backend name, probe window, measured patterns for figures).
    folder : str
        Run folder ("" = nothing is written, only the bookkeeping is kept).
    initial_arrays : dict
        The arrays at the start, user layout
        (:meth:`pypty.engine.session.Reconstruction.arrays_numpy`).
    parent : dict or None
        :func:`pypty.results.load_results` of the parent / restart file.
    restart : bool
        True when the run continues ``parent`` exactly (``restart_from``):
        its loss rows, convergence rows, initial positions and last snapshot
        are carried over.
    part_names : sequence of str
        Parts of the loss recorded per epoch (``loss_data``, ``reg_<name>``).
    """

    def __init__(self, p, setup, folder, initial_arrays, parent=None, restart=False, part_names=("loss_data",)):
        self.p, self.setup, self.folder = p, setup, folder
        self.columns = _LOSS_COLUMNS[:2] + tuple(part_names) + _LOSS_COLUMNS[2:]
        self.t0 = time.perf_counter()
        self.uid, self.timestamp = new_uid(), now()
        self.params_json = to_jsonable(p)
        self.first_epoch = int(p["epoch_prev"])
        self.rows = {k: [] for k in self.columns}
        self.conv = {}
        self.refined = {}
        self.epoch_times = []
        init = dict(initial_arrays)
        self.initial = {"positions": init["positions"]}
        self.snapshot = init
        self.continued_from = parent["path"] if (parent is not None and restart) else ""
        if restart:
            n_rows = len(parent["loss"].get("epoch", []))  # parts missing in older files: NaN
            self.rows = {k: list(parent["loss"].get(k, [float("nan")] * n_rows)) for k in self.columns}
            self.conv = {k: list(v) for k, v in parent["convergence"].items()}
            self.initial = dict(parent["initial"]) or self.initial
            self.history = {k: [dict(e) for e in v] for k, v in parent["provenance"].items()}
        else:
            # the arrays as given (positions in the frame the user gave them) identify a parent's arrays
            hist_arrays = {k: (p[k] if p.get(k) is not None else v) for k, v in init.items()}
            self.history = initial_history(p, hist_arrays, parent)
        self.last_saved_epoch = None
        self.last_written = None  # (path, epochs done) of the last results file written completely

    # ------------------------------------------------------------------ bookkeeping
    def epoch_done(self, epoch, refined, loss, parts, step, accepted, n_evals, epoch_seconds):
        """Record one epoch (``refined``: names of the refined arrays, e.g. ["obj", "probe"]; ``parts`` of the loss)."""
        row = {"epoch": epoch + 1, "loss": float(loss), "step": float(step), "accepted": bool(accepted),
               "evaluations": int(n_evals), "wall_time_s": time.perf_counter() - self.t0, "refined": "+".join(refined)}
        for k in self.columns:
            self.rows[k].append(row[k] if k in row else float(parts.get(k, 0.0)))
        self.epoch_times.append(float(epoch_seconds))
        for name in refined:
            comp = component_name(name)
            self.refined[comp] = self.refined.get(comp, 0) + 1

    def due(self, epoch):
        """(results due, figures due) after ``epoch`` (0-based) by the epoch-dependent cadences."""
        if not self.folder:
            return False, False
        return (every(resolve("save_results_every", self.p["save_results_every"], epoch), epoch),
                every(resolve("save_figures_every", self.p["save_figures_every"], epoch), epoch))

    def restart_point_due(self, epoch):
        """True after the first epoch of the run (0-based ``epoch``), when results.h5 is written for a restart.

        Not when ``save_results_every`` resolves to 0 at that epoch (results
        only at the end, as asked).
        """
        if not self.folder or epoch != self.first_epoch:
            return False
        return bool(resolve("save_results_every", self.p["save_results_every"], epoch))

    # ------------------------------------------------------------------ saving
    def save(self, snapshot, epochs_done, status, figures=False, convergence=True):
        """Write results.h5 (and figures/TIFF when ``figures``) from a snapshot; returns the results path or "".

        ``snapshot``: callable returning a :class:`pypty.engine.session.Snapshot`
        of the current state; it is called only when something is written
        (a run without an output folder copies nothing to the host here).
        ``convergence``: append a convergence row (False for the restart
        point after the first epoch, which is not a save point of the
        cadence).

        Raises
        ------
        pypty.output.atomic.OutputWriteError
            results.h5 could not be written (the previous one is intact).
        """
        if not self.folder:
            return ""
        snap = snapshot()
        arrays = snap.arrays
        crop = scan_crop(snap.positions_canvas, self.setup.model.window_yx, snap.canvas_yx)
        if convergence and self.last_saved_epoch != epochs_done:
            self.conv.setdefault("epoch", []).append(int(epochs_done))
            for k, v in convergence_row(self.snapshot, arrays, crop, self.p["convergence_percentiles"]).items():
                self.conv.setdefault(k, []).append(v)
            self.snapshot = arrays
            self.last_saved_epoch = epochs_done
        path = os.path.join(self.folder, RESULTS_NAME)
        wall = time.perf_counter() - self.t0
        entry = run_entry(self.uid, self.timestamp, __version__, path, self.p["provenance_note"], self.params_json,
                          (self.first_epoch, epochs_done), 0, self.continued_from)
        seeds = {k: self.p[k] for k in self.p if "seed" in k.lower() and self.p[k] is not None}
        record = {
            "attrs": {"pypty_version": __version__, "backend": self.setup.bk.name,
                      "compute": self.setup.bk.describe(), "status": status,
                      "epochs_done": int(epochs_done), "epoch_first": self.first_epoch, "run_uid": self.uid,
                      "timestamp": self.timestamp, "saved": now(), "wall_time_s": wall,
                      "output_folder": os.path.abspath(self.folder),
                      "random_seed": str(seeds) if seeds else None},
            "arrays": arrays, "initial": self.initial,
            "position_offset": np.asarray(snap.position_offset, dtype=np.float64),
            "loss": self.rows, "convergence": self.conv, "params": self.params_json,
            "provenance": with_run(self.history, entry, self.refined),
            "timing": {"wall_time_s": wall, "epochs": len(self.epoch_times),
                       "mean_epoch_s": float(np.mean(self.epoch_times)) if self.epoch_times else 0.0},
            "restart": snap.restart,
        }
        write_results(path, record)
        self.last_written = (path, int(epochs_done))
        if figures:
            self._figures(snap, arrays, crop, epochs_done)
        return path

    def _figures(self, snap, arrays, crop, epochs_done):
        from . import figures as F  # matplotlib is imported only when figures are made

        sel = self.p["save_figures"]
        if "all" in sel:
            sel = F.FIGURES
        fdir = os.path.join(self.folder, "figures")
        os.makedirs(fdir, exist_ok=True)
        tag = f"epoch{epochs_done:04d}"
        pix = (float(self.p["pixel_size_y_A"]), float(self.p["pixel_size_x_A"]))
        made = {}
        if "loss" in sel:
            made["loss"] = F.loss_figure(self.rows["epoch"], self.rows["loss"])
        if "object_phase" in sel:
            made["object_phase"] = F.object_phase_figure(arrays["obj"], pix, crop)
        if "probe" in sel:
            made["probe"] = F.probe_figure(arrays["probe"])
        if "positions" in sel:
            made["positions"] = F.positions_figure(self.initial["positions"], arrays["positions"], pix)
        if "patterns" in sel:
            n = self.setup.n_patterns
            idx = np.unique(np.array([0, n // 2, n - 1]))
            model = snap.model_patterns(idx)
            measured = np.fft.fftshift(self.setup.source.batch(idx), axes=(1, 2))
            made["patterns"] = F.patterns_figure(measured, model, idx)
        for name, fig in made.items():
            F.save_png(fig, os.path.join(fdir, f"{name}_{tag}.png"))
        if self.p["save_tiff"]:
            export_tiffs(os.path.join(self.folder, "tiff"), arrays, self.p["save_tiff"], self.p["tiff_bit_depths"],
                         self.p["tiff_fov"], crop, epochs_done)
