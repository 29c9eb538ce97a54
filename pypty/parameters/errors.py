"""The error raised for unusable parameters, and the one format of its per-parameter messages."""
from __future__ import annotations

__all__ = ["PyptyParameterError", "parameter_error"]


class PyptyParameterError(ValueError):
    """A key or value of ``pypty_params`` is unknown, malformed or not supported yet."""


def parameter_error(name: str, msg: str) -> PyptyParameterError:
    """The error for parameter ``name``, with the message ``"parameter '<name>': <msg>"``.

    Used by every check that relates parameters to each other or to the data
    (:mod:`pypty.parameters.consistency`, :mod:`pypty.model.setup`,
    :mod:`pypty.initialize.probe`), so that their messages share one form.

    Parameters
    ----------
    name : str
        The parameter the message is about.
    msg : str
        What is wrong and, where possible, what to do.

    Returns
    -------
    PyptyParameterError
        To be raised by the caller.
    """
    return PyptyParameterError(f"parameter '{name}': {msg}")
