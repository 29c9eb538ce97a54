"""``pypty-sample``: reconstruct the bundled sample dataset (SrTiO3 [001], 200 kV, abTEM).

Everything comes from the file's metadata through :mod:`pypty.initialize`
(voltage, semi-angle, scan step and shape, detector calibration, C10); the
probe is built by ``run`` from the mean pattern.  Writes ``summary.png``
(object phase, probe amplitude, scan positions) and the run's checkpoints
into the output folder.

Usage::

    pypty-sample [--out runs/pypty_sample] [--epochs 40] [--slices 1]
"""
from __future__ import annotations

import argparse
import importlib.resources
import json
import os

import numpy as np

__all__ = ["sample_path", "sample_params", "summary_figure", "main"]

SAMPLE_FILE = "sample_srtio3.h5"


def sample_path() -> str:
    """Path of the sample dataset inside the installed package."""
    return str(importlib.resources.files("pypty") / "data" / SAMPLE_FILE)


def sample_params(output_folder="runs/pypty_sample", epochs=40, num_slices=1) -> dict:
    """``pypty_params`` for the sample (11.7 Å thick, no padding: the detector reaches 51 mrad)."""
    from .initialize import pypty_params_from_dataset

    params = pypty_params_from_dataset(sample_path(), data_pad=0, thickness_A=11.715, num_slices=num_slices)
    params.update(output_folder=output_folder, epoch_max=int(epochs), algorithm="lsq_sqrt", print_flag=1)
    return params


def summary_figure(result, pixel_size_A, path):
    """Save object phase (sum over slices), probe amplitude and positions as a PNG (Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    obj, probe, pos = np.asarray(result["obj"]), np.asarray(result["probe"]), np.asarray(result["positions"])
    fig = Figure(figsize=(13, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    phase = np.angle(obj[..., 0]).sum(axis=2)
    h, w = phase.shape
    im = axes[0].imshow(phase, cmap="gray", extent=(0, w * pixel_size_A, h * pixel_size_A, 0))
    fig.colorbar(im, ax=axes[0], label="phase (rad)")
    axes[0].set_title("object phase")
    amp = np.sqrt(np.sum(np.abs(probe) ** 2, axis=2))
    axes[1].imshow(amp, cmap="magma")
    axes[1].set_title(f"probe amplitude ({probe.shape[2]} mode(s))")
    axes[2].plot(pos[:, 1], pos[:, 0], ".", ms=2)
    axes[2].set_aspect("equal")
    axes[2].invert_yaxis()
    axes[2].set_title("positions (px, top-left of window)")
    for ax, lab in zip(axes, ("x (Å)", "x (px)", "x (px)")):
        ax.set_xlabel(lab)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    """Command-line entry point; returns the result of :func:`pypty.iterative.run`."""
    import pypty.iterative

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/pypty_sample", help="output folder")
    ap.add_argument("--epochs", type=int, default=40, help="number of epochs (default 40)")
    ap.add_argument("--slices", type=int, default=1, help="number of slices (default 1)")
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.slices < 1:
        ap.error("--epochs and --slices must be >= 1")
    params = sample_params(args.out, args.epochs, args.slices)
    params["overwrite_output"] = True  # a demo: running it again replaces its own previous run
    result = pypty.iterative.run(params)
    png = os.path.join(args.out, "summary.png")
    summary_figure(result, params["pixel_size_x_A"], png)
    loss = result["loss"]
    print(json.dumps({"epochs": len(loss), "first_loss": loss[0], "final_loss": loss[-1],
                      "wall_time_s": round(result["wall_time_s"], 1), "figure": png}, indent=1))
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
