"""Measured data: sources with validation and preprocessing, and the batch size from free memory.

* :mod:`pypty.data.sources` -- :class:`PatternSource` (patterns from an
  array, ``.npy`` or ``.h5``), :class:`SignalSource` (compressed signals),
  :func:`preprocess`, :class:`DataError`;
* :mod:`pypty.data.memory` -- ``compute_batch="auto"``.

The folder also holds the bundled sample dataset (``sample_srtio3.h5`` and
its ``.json`` description, see :mod:`pypty.sample`).
"""
from .sources import DataError, PatternSource, Preprocessing, SignalSource, preprocess

__all__ = ["DataError", "Preprocessing", "PatternSource", "SignalSource", "preprocess"]
