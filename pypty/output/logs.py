"""Per-epoch outputs of a run: the loss log ``loss.csv`` and the ``.npy`` checkpoints."""
from __future__ import annotations

import csv
import io
import os

from ..model.refinables import checkpoint_name
from .atomic import _write_error, atomic_write_bytes, save_npy_atomic

__all__ = ["LossLog", "save_checkpoints"]


def _kept_rows(path, keep_until):
    """Rows (dicts) of an existing loss.csv with ``epoch <= keep_until`` (all rows when None)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if keep_until is None:
        return rows
    kept = []
    for row in rows:
        try:
            if int(float(row.get("epoch") or "nan")) <= keep_until:
                kept.append(row)
        except ValueError:
            continue  # a row cut short by a kill: dropped
    return kept


class LossLog:
    """Append-only ``loss.csv``: one row per epoch, flushed after every row.

    Columns: epoch, wall_time_s (since the run started), loss (the objective),
    its parts (``loss_data``, the weighted data term, and ``reg_<name>`` for
    every loss term of the run, 0 where a term is inactive), step (accepted
    step length; 0 if rejected), accepted (0/1), evaluations (loss+gradient
    evaluations in the line search), refined (arrays refined this epoch,
    ``+``-separated).  A restarted run (``epoch_prev > 0``) continues an
    existing file: rows after the restart epoch (``keep_until``, left by the
    part of the earlier run after its last save point) are dropped first, so
    every epoch appears once; the file is then rewritten atomically with this
    run's columns (values of columns the earlier rows lack are left empty).

    A row that cannot be written (full disk, quota) raises
    :class:`pypty.output.atomic.OutputWriteError` naming the file; the file
    is cut back to its last complete row.

    Parameters
    ----------
    path : str
    append : bool
        Continue an existing file instead of starting a new one.
    part_names : sequence of str
        The parts of the loss (``("loss_data",)`` plus ``reg_<name>`` columns).
    keep_until : int or None
        With ``append``: keep only the rows with ``epoch <= keep_until`` (the
        restart epoch); None keeps every row.
    """

    def __init__(self, path: str, append: bool, part_names=("loss_data",), keep_until=None):
        self.path = path
        self.part_names = tuple(part_names)
        self.columns = ("epoch", "wall_time_s", "loss") + self.part_names + ("step", "accepted", "evaluations",
                                                                             "refined")
        rows = _kept_rows(path, keep_until) if (append and os.path.exists(path)) else []
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(self.columns)
        for row in rows:
            w.writerow([row.get(k, "") or "" for k in self.columns])
        atomic_write_bytes(path, buf.getvalue().encode())  # mode 0o666 less the umask, as every output file
        try:
            self._fh = open(path, "a", newline="")
        except OSError as exc:
            raise _write_error(path, exc) from exc
        self._size = self._fh.tell()

    def write(self, epoch, wall, loss, parts, step, accepted, evaluations, refined):
        """One row; ``parts`` {part name: float} (missing parts are written as 0)."""
        buf = io.StringIO(newline="")
        csv.writer(buf).writerow([epoch, f"{wall:.3f}", repr(float(loss))]
                                 + [repr(float(parts.get(k, 0.0))) for k in self.part_names]
                                 + [repr(float(step)), int(bool(accepted)), int(evaluations), "+".join(refined)])
        try:
            self._fh.write(buf.getvalue())
            self._fh.flush()
        except OSError as exc:
            self._cut_back()
            raise _write_error(self.path, exc) from exc
        self._size = self._fh.tell()

    def _cut_back(self):
        """Drop a partly written row (shrinking a file needs no space) and reopen for appending."""
        try:
            self._fh.close()
        except OSError:
            pass
        try:
            os.truncate(self.path, self._size)
        except OSError:
            pass
        try:
            self._fh = open(self.path, "a", newline="")
        except OSError:
            self._fh = open(os.devnull, "w")

    def close(self):
        try:
            self._fh.close()
        except OSError:
            pass


def save_checkpoints(folder: str, arrays: dict) -> None:
    """Write every array (user layout) to its checkpoint file in ``folder`` (atomically; ``co.npy``, ...)."""
    os.makedirs(folder, exist_ok=True)
    for name, arr in arrays.items():
        save_npy_atomic(os.path.join(folder, checkpoint_name(name)), arr)
