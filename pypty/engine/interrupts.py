"""Stop signals of batch schedulers, handled like Ctrl-C while a reconstruction runs.

SLURM and PBS send SIGTERM when a job reaches its time limit (and SIGKILL a
grace period later); some set-ups send SIGHUP or SIGUSR1 (``--signal``).
While :func:`pypty.engine.driver.reconstruct` runs, :func:`stop_signals`
turns each of them into :class:`RunInterrupted`, a :class:`KeyboardInterrupt`,
so the Ctrl-C path saves the state as an interrupted results file before the
run stops.

Handlers are installed only in the main thread and only for signals whose
action is still the default (termination): a signal ignored on purpose
(``nohup`` ignores SIGHUP) or handled by the application keeps its handler.
The previous handlers are restored when the run ends; nothing is left
behind.  After the first signal, further ones are ignored until the run has
saved and stopped.

In MPI runs SIGINT (Ctrl-C, forwarded by ``mpiexec`` to every rank) is
deferred the same way (:data:`DISTRIBUTED_STOP_SIGNALS`).

Public API: :class:`RunInterrupted`, :func:`stop_signals`, :data:`STOP_SIGNALS`,
:data:`DISTRIBUTED_STOP_SIGNALS`.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

__all__ = ["RunInterrupted", "stop_signals", "STOP_SIGNALS", "DISTRIBUTED_STOP_SIGNALS"]

#: Signals handled like Ctrl-C during a run (those this platform has).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGUSR1") if hasattr(signal, n))

#: The same plus SIGINT for MPI runs: Ctrl-C reaches every rank at a different point of its work, so it is
#: deferred like the others instead of raising KeyboardInterrupt wherever each rank happens to be.
DISTRIBUTED_STOP_SIGNALS = STOP_SIGNALS + (signal.SIGINT,)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal (``signum``, ``signame``); a KeyboardInterrupt, so Ctrl-C handling applies."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        try:
            self.signame = signal.Signals(self.signum).name
        except ValueError:
            self.signame = f"signal {self.signum}"
        super().__init__(f"pypty run stopped by {self.signame}")

    def __reduce__(self):
        return type(self), (self.signum,)


@contextmanager
def stop_signals(signals=STOP_SIGNALS, defer=False):
    """Within the block, the default-action ``signals`` raise :class:`RunInterrupted` (see the module docstring).

    Yields the list of signal numbers received so far.  ``defer=True`` (MPI
    runs): the handler only records the signal; the run raises it at its next
    loss evaluation, on every rank at once (:mod:`pypty.distributed.comm`), so
    that no rank leaves a collective the others are in.  A SIGINT in
    ``signals`` (Ctrl-C, which ``mpiexec`` forwards to every rank) is taken
    over only from Python's own handler (:func:`signal.default_int_handler`).
    """
    received: list = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        if len(received) == 1 and not defer:
            raise RunInterrupted(signum)

    previous = {}
    for sig in signals:
        try:
            current = signal.getsignal(sig)
            if current is signal.SIG_DFL or (sig == signal.SIGINT and current is signal.default_int_handler):
                previous[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):
            continue
    try:
        yield received
    finally:
        for sig, old in previous.items():
            try:
                signal.signal(sig, old)
            except (ValueError, OSError):
                pass
