"""Per-epoch outputs of a run: the loss log ``loss.csv`` and the ``.npy`` checkpoints."""
from __future__ import annotations

import csv
import os

from ..model.refinables import checkpoint_name
from .atomic import save_npy_atomic

__all__ = ["LossLog", "save_checkpoints"]


class LossLog:
    """Append-only ``loss.csv``: one row per epoch, flushed after every row.

    Columns: epoch, wall_time_s (since the run started), loss (the objective),
    its parts (``loss_data``, the weighted data term, and ``reg_<name>`` for
    every loss term of the run, 0 where a term is inactive), step (accepted
    step length; 0 if rejected), accepted (0/1), evaluations (loss+gradient
    evaluations in the line search), refined (arrays refined this epoch,
    ``+``-separated).  A restarted run (``epoch_prev > 0``) appends to an
    existing file.

    Parameters
    ----------
    path : str
    append : bool
        Append to an existing file instead of starting a new one.
    part_names : sequence of str
        The parts of the loss (``("loss_data",)`` plus ``reg_<name>`` columns).
    """

    def __init__(self, path: str, append: bool, part_names=("loss_data",)):
        self.path = path
        self.part_names = tuple(part_names)
        self.columns = ("epoch", "wall_time_s", "loss") + self.part_names + ("step", "accepted", "evaluations",
                                                                             "refined")
        new = not (append and os.path.exists(path))
        self._fh = open(path, "w" if new else "a", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(self.columns)
            self._fh.flush()

    def write(self, epoch, wall, loss, parts, step, accepted, evaluations, refined):
        """One row; ``parts`` {part name: float} (missing parts are written as 0)."""
        self._writer.writerow([epoch, f"{wall:.3f}", repr(float(loss))]
                              + [repr(float(parts.get(k, 0.0))) for k in self.part_names]
                              + [repr(float(step)), int(bool(accepted)), int(evaluations), "+".join(refined)])
        self._fh.flush()

    def close(self):
        self._fh.close()


def save_checkpoints(folder: str, arrays: dict) -> None:
    """Write every array (user layout) to its checkpoint file in ``folder`` (atomically; ``co.npy``, ...)."""
    os.makedirs(folder, exist_ok=True)
    for name, arr in arrays.items():
        save_npy_atomic(os.path.join(folder, checkpoint_name(name)), arr)
