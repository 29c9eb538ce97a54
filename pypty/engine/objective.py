"""The objective of one epoch: ``loss_weight * data term + sum of active loss terms``, over optimizer blocks.

The optimizer (:mod:`pypty.optim`) sees a function of *blocks*: the refined
arrays themselves or their reparametrisations (:mod:`pypty.model.reparam`).
:class:`Objective` maps blocks to model arrays, evaluates the data term of
the multislice model over the epoch's batches, weights it with
``loss_weight``, adds every active loss term (:mod:`pypty.regularizers`) with
its gradient, and applies the chain rule of the reparametrisations.  It
records the value of every part at every evaluation, so that the parts at the
point the line search accepted can be reported (``loss.csv`` columns
``loss_data`` and ``reg_<name>``).
"""
from __future__ import annotations

from ..distributed.comm import SerialComm

SERIAL = SerialComm()

__all__ = ["Objective", "part_names"]


def part_names(terms) -> tuple:
    """Names of the parts of the loss for loss terms ``terms``: ``loss_data`` and ``reg_<name>`` per term."""
    return ("loss_data",) + tuple("reg_" + t.name for t in terms)


class Objective:
    """``x -> (loss, grads)`` for the blocks of one epoch.

    Parameters
    ----------
    setup : pypty.model.setup.Setup
        Model, data access, backend and dtypes.
    settings : pypty.engine.settings.EpochSettings
    arrays : dict
        Current arrays (internal layout); the arrays that are not refined are
        taken from here.
    reference : device array or None
        Reference probe spectrum of ``tune_only_probe_*`` (see
        :mod:`pypty.model.reparam`).
    terms : sequence of :class:`pypty.regularizers.LossTerm`
        All loss terms of the run; those active at ``settings.epoch`` count.
    projections : sequence of class-A constraints
        Constraints with ``projected_blocks(epoch)`` and ``project(block, g,
        epoch)``: the gradient of each listed block is projected onto the
        constraint's subspace (after the reparametrisation chain rule), so
        that L-BFGS works on the restricted problem
        (:mod:`pypty.constraints`).
    """

    def __init__(self, setup, settings, arrays, reference=None, terms=(), projections=()):
        self.setup, self.settings, self.base, self.reference = setup, settings, arrays, reference
        self.bk = setup.bk
        self.terms = [t for t in terms if t.active(settings.epoch)]
        ep = settings.epoch
        self.projections = [(c, tuple(c.projected_blocks(ep))) for c in projections if c.active(ep)]
        self.reparams = {}
        for name in settings.refine:
            rp = settings.reparam(name)
            if rp is not None:
                self.reparams[rp.block] = rp
        self.comm = getattr(setup, "comm", None) or SERIAL
        # distributed: this rank's patterns of the sequence, in the sequence's order, in full batches
        self.batches = settings.batches(setup.compute_batch, setup.shard if self.comm.distributed else None)
        self._evaluations = []  # (id(grads), parts) of every call, for parts_at (ids only: no arrays kept alive)

    @property
    def key(self) -> tuple:
        """What the value depends on besides the blocks (part of the key of the cached loss and gradient).

        ``(loss_weight, sequence bytes, subpixel, terms)``; ``terms`` is the
        text (``repr``) of the data loss's name (``("loss", name)``, first:
        the loss may change between epochs), the active terms' names and keys
        (and the active projections' names), so that it is stored as is in a
        results file.
        """
        s = self.settings
        terms = repr((("loss", s.loss_name),) + tuple((t.name, t.key(s.epoch)) for t in self.terms)
                     + tuple(("project", c.name, blocks) for c, blocks in self.projections))
        return (s.loss_weight, s.sequence.tobytes(), s.subpixel, terms)

    @property
    def part_names(self) -> tuple:
        """Names of the parts of the loss: ``loss_data`` and ``reg_<name>`` of the active terms."""
        return part_names(self.terms)

    def arrays(self, x: dict) -> dict:
        """Model arrays for block values ``x`` (arrays that are not refined: from the current state)."""
        a = dict(self.base)
        for block, val in x.items():
            rp = self.reparams.get(block)
            if rp is None:
                a[block] = val
            else:
                a[rp.array] = rp.to_array(self.bk, val, self.reference, self.setup.complex_dtype)
        return a

    def __call__(self, x: dict):
        """Loss (Python float) and gradients {block: array} (dtype of each block) at ``x``."""
        s = self.settings
        a = self.arrays(x)
        # a pattern term (PACBED, pypty.regularizers.pacbed) acts through the model's adjoint: its derivative joins
        # the data term's per batch, where the model also applies loss_weight (so g comes back weighted)
        hook = next((t.pattern_hook(self.setup, a, self.batches, s) for t in self.terms
                     if hasattr(t, "pattern_hook")), None)

        def data_term():
            return self.setup.model.loss_and_grad(a, self.batches, self.setup.get_data, need=s.refine,
                                                  subpixel=s.subpixel, pattern_term=hook, loss_name=s.loss_name)

        # distributed: this rank's patterns, then one reduction of [loss, error flag, gradients] gives every rank
        # the same bits (pypty.distributed.comm); one process: data_term() itself
        bk = self.bk
        specs = [(name, tuple(a[name].shape), a[name].dtype) for name in s.refine]
        data, g = self.comm.evaluate(bk.xp, bk.to_numpy, bk.asarray, specs, data_term)
        w = s.loss_weight
        loss = data * w
        if w != 1.0 and hook is None:
            g = {k: (w * v).astype(v.dtype, copy=False) for k, v in g.items()}
        parts = {"loss_data": loss}
        for term in self.terms:
            if hook is not None and term is hook.term:  # value computed by the hook, gradient already in g
                value, tg = hook.value, {}
            else:
                value, tg = term.value_and_grad(a, s.epoch)
            value = float(value)
            parts["reg_" + term.name] = value
            loss += value
            for name, gt in tg.items():
                if name in g:
                    g[name] = g[name] + gt
        grads = {}
        for name in s.refine:
            block = s.block_name(name)
            gn = g[name]
            rp = self.reparams.get(block)
            if rp is not None:
                gn = rp.grad(self.bk, gn, x[block], a[name], self.reference)
            for c, blocks in self.projections:
                if block in blocks:
                    gn = c.project(block, gn, s.epoch)
            grads[block] = gn.astype(x[block].dtype, copy=False)
        self._evaluations.append((id(grads), parts))
        return loss, grads

    def parts_at(self, grads) -> dict | None:
        """The parts of the loss of the evaluation that returned ``grads`` (a live dict), or None.

        The newest record with ``id(grads)`` is the one of ``grads`` itself:
        no dict made after it, while it is alive, can share its id.
        """
        for ident, parts in reversed(self._evaluations):
            if ident == id(grads):
                return parts
        return None
