"""The reconstruction engine: the epoch loop, the state of a run, the per-epoch objective.

* :mod:`~pypty.engine.driver` -- :func:`reconstruct`, the epoch loop behind :func:`pypty.iterative.run`;
* :mod:`~pypty.engine.session` -- :class:`Reconstruction` (state, ``step``, ``replace_arrays``, snapshots, restart);
* :mod:`~pypty.engine.objective` -- ``loss_weight * data term + loss terms`` over optimizer blocks;
* :mod:`~pypty.engine.settings` -- :class:`EpochSettings`, the epoch-dependent parameters of one epoch.
"""
