"""Everything a run writes: atomic files, loss log and checkpoints, results.h5, provenance, figures, exports.

* :mod:`~pypty.output.atomic` -- atomic writes (temporary file + rename);
* :mod:`~pypty.output.logs` -- ``loss.csv`` and the ``.npy`` checkpoints;
* :mod:`~pypty.output.results` -- the HDF5 results file (public as :mod:`pypty.results`);
* :mod:`~pypty.output.provenance` -- history of every component (public as :mod:`pypty.provenance`);
* :mod:`~pypty.output.savepoints` -- what is written at save points;
* :mod:`~pypty.output.folders` -- run-folder naming;
* :mod:`~pypty.output.figures`, :mod:`~pypty.output.exports` -- PNG figures, TIFF exports.

Importing this package imports none of them (matplotlib, tifffile and h5py
are loaded only by the modules that need them).
"""
