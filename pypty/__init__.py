"""pypty: electron ptychography from 4D-STEM data.

The main entry point is :func:`pypty.iterative.run`, driven by one flat dict of
parameters (see ``docs/parameters.md``).  Importing pypty has no side effects:
the array backend (CuPy or NumPy + ``scipy.fft``) is chosen when a
reconstruction starts, not at import time.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
