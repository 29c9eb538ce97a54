"""``pypty``: run a reconstruction from a parameter file on the command line.

Usage::

    pypty run PARAMS [--traceback]
    pypty --version
    python -m pypty run PARAMS
    mpiexec -n R python -m mpi4py -m pypty run PARAMS   # R processes, docs/distributed.md

``PARAMS`` is a JSON file (or, on Python >= 3.11, a TOML file: the name ends
in ``.toml``) holding one flat ``pypty_params`` object, the dict that
:func:`pypty.iterative.run` takes (keys and values: ``docs/parameters.md``).
Paths are strings, relative to the current directory; arrays are (nested)
lists; epoch-dependent values are numbers or the ``"lambda epoch: ..."``
strings of ``docs/parameters.md``; callables and complex arrays cannot be
written.  For example::

    {"data_path": "scan.h5", "output_folder": "runs/scan", "epoch_max": 20,
     "num_slices": 1, "algorithm": "lsq_sqrt"}

The run's own messages (as many as ``print_flag`` asks for) and its
progress bar go to stderr; stdout holds only a JSON summary (epochs, first
and final loss, wall time, output folder, results file), so that
``pypty run params.json > summary.json`` keeps a clean summary.

Exit status (the same for ``pypty-sample``):

- 0: success (also after ``--help`` and ``--version``);
- 1: an error after the command line was read: parameter file missing,
  unreadable or not valid JSON/TOML, invalid parameter
  (:class:`pypty.parameters.PyptyParameterError`), unusable data, an output
  folder that cannot be written or already holds another run, ...; one line
  ``pypty: error: ...`` on stderr (``--traceback`` shows the traceback);
- 2: a bad command line (unknown option, missing ``PARAMS``): argparse's
  usage message;
- 130: interrupted with Ctrl-C (the run says where its state was saved).

From Python, :func:`load_params` reads a parameter file and
:func:`run_params_file` runs one and returns the result of
:func:`pypty.iterative.run`; :func:`main` is the console entry point and
returns the exit status.  Importing this module imports nothing heavy.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback as _traceback
from typing import Optional, Sequence

__all__ = ["ParamsFileError", "USER_ERRORS", "error_status", "run_command", "load_params", "run_params_file",
           "main"]

#: Exceptions reported as one line by the console commands.  pypty's own error types
#: (``PyptyParameterError``, ``DataError``, ``DatasetError``, ``CalibrationError``,
#: ``ResultsFileError``, :class:`ParamsFileError`) subclass ``ValueError``; files and folders raise
#: ``OSError``; ``RuntimeError`` is an epoch-dependent parameter that raised; ``MemoryError`` a
#: reconstruction too large for the host or GPU memory.  Anything else is a bug: traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError, MemoryError)


class ParamsFileError(ValueError):
    """A parameter file cannot be read, is not valid JSON/TOML, or does not hold one object."""


def run_command(prog: str, fn, traceback: bool = False):
    """Run ``fn()`` for a console command (``pypty run``, ``pypty-sample``): ``(None, result)`` on success,
    ``(exit status, None)`` after an error reported by :func:`error_status`.

    What the run prints on stdout (its log lines, written with ``tqdm.write``) goes to stderr, so that
    stdout holds only the command's JSON summary; the Python API (:func:`pypty.iterative.run`) prints
    where it always does.  Errors other than :data:`USER_ERRORS` and ``KeyboardInterrupt`` propagate.
    """
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return None, fn()
    except (KeyboardInterrupt,) + USER_ERRORS as exc:
        return error_status(prog, exc, traceback=traceback), None


def error_status(prog: str, exc: BaseException, traceback: bool = False) -> int:
    """Report an error of a console command as one line on stderr and return the exit status.

    Parameters
    ----------
    prog : str
        The command's name, which starts the line (``"<prog>: error: <message>"``).
    exc : BaseException
        The error; its message is put on one line (whitespace collapsed), or
        its type name when it has no message.
    traceback : bool
        Print the full traceback before the line.

    Returns
    -------
    int
        130 for ``KeyboardInterrupt``, otherwise 1.
    """
    if isinstance(exc, KeyboardInterrupt):
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if traceback:
        _traceback.print_exception(type(exc), exc, exc.__traceback__)
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError):
        message = f"out of memory: {message}"
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


def load_params(path) -> dict:
    """Read a flat ``pypty_params`` dict from a JSON or TOML file.

    Parameters
    ----------
    path : str or os.PathLike
        The file.  A name ending in ``.toml`` (any case) is read as TOML
        (needs :mod:`tomllib`, Python >= 3.11); anything else as JSON.

    Returns
    -------
    dict
        The parameters as written (lists stay lists; :func:`pypty.iterative.run`
        validates and converts them).

    Raises
    ------
    ParamsFileError
        The file is missing or unreadable, is not valid JSON/TOML, does not
        hold one object (table), or is TOML on a Python without :mod:`tomllib`.
    """
    path = os.fspath(path)
    is_toml = path.lower().endswith(".toml")
    if is_toml:
        try:
            import tomllib
        except ImportError:
            raise ParamsFileError(f"parameter file '{path}': reading TOML needs Python >= 3.11 (tomllib); "
                                  f"write the parameters as JSON") from None
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ParamsFileError(f"cannot read parameter file '{path}': {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
        params = tomllib.loads(text) if is_toml else json.loads(text)
    except UnicodeDecodeError as exc:
        raise ParamsFileError(f"parameter file '{path}' is not UTF-8 text: {exc}") from None
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ParamsFileError(f"parameter file '{path}' is not valid {'TOML' if is_toml else 'JSON'}: "
                              f"{exc}") from None
    if not isinstance(params, dict):
        raise ParamsFileError(f"parameter file '{path}' must hold one JSON object of parameters "
                              f"({{\"key\": value, ...}}), got {type(params).__name__}")
    return params


def run_params_file(path) -> dict:
    """Run :func:`pypty.iterative.run` with the parameters of a JSON or TOML file.

    Parameters
    ----------
    path : str or os.PathLike
        The parameter file (see :func:`load_params`).

    Returns
    -------
    dict
        The result of :func:`pypty.iterative.run`.

    Raises
    ------
    ParamsFileError
        The file cannot be read as a parameter file.
    pypty.parameters.PyptyParameterError
        Invalid parameters.
    pypty.data.DataError, OSError, RuntimeError
        As :func:`pypty.iterative.run` (unusable data, output folder
        problems, an epoch-dependent parameter that raised).
    """
    params = load_params(path)  # a bad file fails before the heavy imports
    import pypty.iterative

    return pypty.iterative.run(params)


def _summary(result: dict) -> str:
    loss = [float(v) for v in result.get("loss", [])]
    return json.dumps({"epochs": len(loss), "first_loss": loss[0] if loss else None,
                       "final_loss": loss[-1] if loss else None,
                       "wall_time_s": round(float(result.get("wall_time_s", 0.0)), 1),
                       "output_folder": result.get("output_folder", ""),
                       "results_file": result.get("results_file", "")}, indent=1)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(
        prog="pypty", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="pypty: electron ptychography from 4D-STEM data.",
        epilog="exit status: 0 success; 1 error (parameter file, invalid parameter, data, output folder:\n"
               "one line on stderr); 2 bad command line; 130 interrupted (Ctrl-C).\n"
               "See 'pypty run --help' and docs/installation.md.")
    ap.add_argument("--version", action="version", version=f"pypty {__version__}",
                    help="print the pypty version and exit")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    run = sub.add_parser(
        "run", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="reconstruct with the parameters of a JSON/TOML file",
        description="Run pypty.iterative.run with the flat pypty_params of a JSON file (or TOML, for a\n"
                    "name ending in .toml, on Python >= 3.11). Paths are strings relative to the current\n"
                    "directory, arrays are lists; keys and values: docs/parameters.md. Prints a JSON\n"
                    "summary (epochs, first and final loss, wall time, output folder, results file).",
        epilog='example PARAMS: {"data_path": "scan.h5", "output_folder": "runs/scan", "epoch_max": 20}\n'
               "exit status: 0 success; 1 error (one line on stderr); 2 bad command line; 130 Ctrl-C.")
    run.add_argument("params", metavar="PARAMS", help="the parameter file (.json, or .toml)")
    run.add_argument("--traceback", action="store_true",
                     help="on an error, show the full Python traceback instead of one line")
    return ap


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point of ``pypty``: ``pypty run PARAMS`` and ``pypty --version``.

    Parameters
    ----------
    argv : sequence of str, optional
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
    args = _parser().parse_args(argv)
    # one command so far ("run"; argparse rejects anything else)
    status, result = run_command("pypty", lambda: run_params_file(args.params), args.traceback)
    if status is not None:
        return status
    if _is_root():
        print(_summary(result))
    return 0


def _is_root() -> bool:
    """False on the ranks > 0 of an MPI launch (only rank 0 prints the summary); mpi4py is not imported here."""
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return mpi.COMM_WORLD.Get_rank() == 0
    for name in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        v = os.environ.get(name, "").strip()
        if v.isdigit():
            return int(v) == 0
    return True


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
