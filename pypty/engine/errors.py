"""Errors that stop a reconstruction run (the driver saves the last good state before they propagate)."""
from __future__ import annotations

__all__ = ["NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The loss or its gradient at the current point is NaN or infinite.

    Raised by :meth:`pypty.engine.session.Reconstruction.step` before the
    step is accepted; the reconstruction then holds the arrays of the last
    epoch that ended with a finite loss (edits made at the start of the
    failing epoch are undone), so the interrupted save of
    :func:`pypty.engine.driver.reconstruct` writes that state.

    Attributes
    ----------
    epoch : int
        0-based epoch (the message says ``epoch + 1``, as the run's log does).
    parts : dict
        The non-finite parts of the loss (``loss_data``, ``reg_<name>``), or
        ``{"loss": value}`` when the parts are not known.
    blocks : tuple of str
        Optimizer blocks whose gradient holds NaN or inf.
    """

    def __init__(self, message: str, epoch: int, parts: dict, blocks: tuple):
        super().__init__(message)
        self.epoch, self.parts, self.blocks = epoch, dict(parts), tuple(blocks)
