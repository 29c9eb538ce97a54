"""``pypty.results``: the results file (one HDF5 file per run); see :mod:`pypty.output.results`."""
from .output.results import (FORMAT, FORMAT_VERSION, RESULTS_NAME, ResultsFileError, load_results,
                             params_from_results, results_path, validate_results, write_results)

__all__ = ["ResultsFileError", "RESULTS_NAME", "FORMAT", "FORMAT_VERSION", "write_results", "load_results",
           "validate_results", "params_from_results", "results_path"]
