"""``pypty-sample``: reconstruct the bundled sample dataset (SrTiO3 [001], 200 kV, abTEM).

Everything comes from the file's metadata through :mod:`pypty.initialize`
(voltage, semi-angle, scan step and shape, detector calibration, C10); the
probe is built by ``run`` from the mean pattern.  Writes ``summary.png``
(object phase, probe amplitude, scan positions) and the run's checkpoints
into the output folder.

Usage::

    pypty-sample [--out runs/pypty_sample] [--epochs 40] [--slices 1]

From Python, :func:`reconstruct_sample` does the same and returns the result
of :func:`pypty.iterative.run`; :func:`main` is the console entry point: it
returns the exit status (0 success, 1 error reported as one line on stderr,
130 interrupted), and a bad command line exits with 2 (argparse).
"""
from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import sys

import numpy as np

__all__ = ["sample_path", "sample_params", "summary_figure", "reconstruct_sample", "main"]

SAMPLE_FILE = "sample_srtio3.h5"


def sample_path() -> str:
    """Path of the sample dataset inside the installed package.

    Returns
    -------
    str
        Path of ``pypty/data/sample_srtio3.h5`` (a pypty dataset with its metadata).
    """
    return str(importlib.resources.files("pypty") / "data" / SAMPLE_FILE)


def sample_params(output_folder="runs/pypty_sample", epochs=40, num_slices=1) -> dict:
    """``pypty_params`` for the sample (11.7 Å thick, no padding: the detector reaches 51 mrad).

    Parameters
    ----------
    output_folder : str
        Where the run writes its files (``output_folder`` of ``pypty_params``).
    epochs : int
        Number of epochs (``epoch_max``).
    num_slices : int
        Number of slices the 11.7 Å are cut into.

    Returns
    -------
    dict
        A ``pypty_params`` dict for :func:`pypty.iterative.run` (algorithm
        ``lsq_sqrt``, progress bar on).

    Raises
    ------
    pypty.initialize.DatasetError, pypty.initialize.CalibrationError
        The sample file is missing metadata (a broken installation).
    """
    from .initialize import pypty_params_from_dataset

    params = pypty_params_from_dataset(sample_path(), data_pad=0, thickness_A=11.715, num_slices=num_slices)
    params.update(output_folder=output_folder, epoch_max=int(epochs), algorithm="lsq_sqrt", print_flag=1)
    return params


def summary_figure(result, pixel_size_A, path):
    """Save object phase (sum over slices), probe amplitude and positions as a PNG (Agg, no pyplot).

    Parameters
    ----------
    result : dict
        The result of :func:`pypty.iterative.run` (``obj``, ``probe`` and
        ``positions`` are used).
    pixel_size_A : float
        Object pixel size in Å, for the axes of the phase image.
    path : str
        The PNG file to write (its folder must exist).

    Raises
    ------
    OSError
        ``path`` cannot be written.
    """
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




def reconstruct_sample(output_folder="runs/pypty_sample", epochs=40, num_slices=1) -> dict:
    """Reconstruct the bundled sample and save ``summary.png``: what ``pypty-sample`` does, from Python.

    A previous run in ``output_folder`` is replaced (``overwrite_output=True``).

    Parameters
    ----------
    output_folder : str
        Folder of the run's files and of ``summary.png``.
    epochs : int
        Number of epochs (>= 1).
    num_slices : int
        Number of slices (>= 1).

    Returns
    -------
    dict
        The result of :func:`pypty.iterative.run`, plus ``figure``, the path
        of ``summary.png``.

    Raises
    ------
    pypty.parameters.PyptyParameterError
        ``epochs`` or ``num_slices`` is not a positive integer.
    OSError
        ``output_folder`` cannot be created or written.
    """
    import pypty.iterative
    from .parameters.errors import parameter_error

    for name, value in (("epoch_max", epochs), ("num_slices", num_slices)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise parameter_error(name, f"expects an int >= 1, got {value!r}")
    params = sample_params(output_folder, epochs, num_slices)
    params["overwrite_output"] = True  # a demo: running it again replaces its own previous run
    result = pypty.iterative.run(params)
    png = os.path.join(result.get("output_folder") or output_folder, "summary.png")
    summary_figure(result, params["pixel_size_x_A"], png)
    result["figure"] = png
    return result


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(
        prog="pypty-sample", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reconstruct the sample dataset bundled with pypty (SrTiO3 [001], 200 kV, simulated with\n"
                    "abTEM) to check an installation. Writes the run's files and summary.png (object phase,\n"
                    "probe amplitude, scan positions) into the output folder, replacing a previous run\n"
                    "there, and prints a JSON summary (epochs, first and final loss, wall time, figure).",
        epilog="exit status: 0 success; 1 error (output folder not writable, invalid parameter, ...:\n"
               "one line on stderr); 2 bad command line; 130 interrupted (Ctrl-C).")
    ap.add_argument("--out", default="runs/pypty_sample", metavar="FOLDER",
                    help="output folder (default: runs/pypty_sample)")
    ap.add_argument("--epochs", type=_positive_int, default=40, metavar="N",
                    help="number of epochs, >= 1 (default: 40)")
    ap.add_argument("--slices", type=_positive_int, default=1, metavar="N",
                    help="number of slices the 11.7 A thick sample is cut into, >= 1 (default: 1)")
    ap.add_argument("--traceback", action="store_true",
                    help="on an error, show the full Python traceback instead of one line")
    ap.add_argument("--version", action="version", version=f"pypty {__version__}",
                    help="print the pypty version and exit")
    return ap


def main(argv=None) -> int:
    """Console entry point of ``pypty-sample``: run :func:`reconstruct_sample`, print a JSON summary.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments without the program name; ``sys.argv[1:]``
        when None.

    Returns
    -------
    int
        Exit status: 0 success, 1 error (reported as one line on stderr),
        130 interrupted.

    Raises
    ------
    SystemExit
        From argparse: status 2 for a bad command line, 0 after ``--help``
        or ``--version``.
    """
    from .cli import run_command

    args = _parser().parse_args(argv)
    status, result = run_command("pypty-sample", lambda: reconstruct_sample(args.out, args.epochs, args.slices),
                                 args.traceback)
    if status is not None:
        return status
    loss = result["loss"]
    print(json.dumps({"epochs": len(loss), "first_loss": loss[0], "final_loss": loss[-1],
                      "wall_time_s": round(result["wall_time_s"], 1), "figure": result["figure"]}, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
