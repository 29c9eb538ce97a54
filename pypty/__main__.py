"""``python -m pypty``: the ``pypty`` command line (:func:`pypty.cli.main`).

Also the distributed launch: ``mpiexec -n R python -m mpi4py -m pypty run params.json``
(``docs/distributed.md``).
"""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
