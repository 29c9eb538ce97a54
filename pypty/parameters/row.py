"""One row of the parameter table: :class:`Parameter`, :class:`ArrayDefault` and the row builder ``_p``.

:mod:`pypty.parameters.table` writes every row with ``_p`` (a keyword bundle
without the section) and :func:`index_table` turns the sections of rows into
:data:`~pypty.parameters.SECTIONS` and :data:`~pypty.parameters.PARAMETERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from .checks import Check, _choice

__all__ = ["ArrayDefault", "Parameter", "index_table"]


@dataclass(frozen=True)
class ArrayDefault:
    """Immutable description of an array default; :meth:`make` builds a fresh array."""

    values: tuple
    dtype: str = "float64"

    def make(self) -> np.ndarray:
        """A new numpy array holding ``values`` (never shared)."""
        return np.array(self.values, dtype=self.dtype)

    def __repr__(self) -> str:
        return "np.array(%r)" % (self.make().tolist(),)


@dataclass(frozen=True)
class Parameter:
    """One entry of the parameter table.

    Attributes: ``name``; ``default`` (an immutable value or an
    :class:`ArrayDefault`; use :func:`default_value` for a fresh copy);
    ``types`` (short human description such as "float"); ``section`` (the
    contract's section heading); ``unit`` ("Å", "kV", "px" or ""); ``doc``
    (one line); ``epoch_dependent`` (accepts callables / lambda strings);
    ``supported`` (False: accepted only at the default); ``choices`` (allowed
    strings) and ``supported_choices`` (the implemented subset);
    ``support_note`` (what is implemented, for the docs); ``check`` (the
    value check); ``default_equivalent`` (optional predicate telling that a
    value has the same effect as the default); ``extension`` (True for
    parameters pypty adds to the contract; their doc starts with
    "pypty extension").
    """

    name: str
    default: Any
    types: str
    section: str
    doc: str
    check: Check
    unit: str = ""
    epoch_dependent: bool = False
    supported: bool = False
    choices: Optional[Tuple[str, ...]] = None
    supported_choices: Optional[Tuple[str, ...]] = None
    support_note: str = ""
    default_equivalent: Optional[Callable[[Any], bool]] = None
    extension: bool = False

    @property
    def expects(self) -> str:
        """Completion of "parameter 'x' expects ..." for error messages."""
        text = self.check.expects
        if self.epoch_dependent:
            text += ", a callable f(epoch) or a 'lambda epoch: ...' string"
        return text

    @property
    def default_text(self) -> str:
        """The default as shown in messages and docs."""
        if isinstance(self.default, str):
            return '"%s"' % self.default
        return repr(self.default)


def _p(name, default, types, doc, check=None, *, unit="", epoch=False, supported=False,
       choices=None, supported_choices=None, support_note="", default_equivalent=None, extension=False):
    """Keyword bundle for one table row (the section is added by :func:`index_table`)."""
    if check is None:
        if choices is None:
            raise AssertionError("parameter %s needs a check" % name)
        check = _choice(choices, supported_choices)
    if supported_choices and not support_note:
        support_note = "only " + ", ".join('"%s"' % c for c in supported_choices)
    return dict(name=name, default=default, types=types, doc=doc, check=check, unit=unit,
                epoch_dependent=epoch, supported=supported, choices=choices,
                supported_choices=supported_choices, support_note=support_note,
                default_equivalent=default_equivalent, extension=extension)


def index_table(table: Sequence[Tuple[str, Sequence[dict]]]) -> Tuple[Tuple[str, ...], Dict[str, Parameter]]:
    """Section titles and ``{name: Parameter}`` of a table of ``(section title, rows of _p)``.

    Parameters
    ----------
    table : sequence of (str, sequence of dict)
        Sections in order, each with its rows as made by ``_p``.

    Returns
    -------
    sections : tuple of str
        The section titles in order.
    parameters : dict
        Every :class:`Parameter`, keyed by name, in table order.

    Raises
    ------
    AssertionError
        When a name occurs twice.
    """
    parameters: Dict[str, Parameter] = {}
    for title, rows in table:
        for row in rows:
            if row["name"] in parameters:
                raise AssertionError("duplicate parameter %s" % row["name"])
            parameters[row["name"]] = Parameter(section=title, **row)
    return tuple(title for title, _ in table), parameters
