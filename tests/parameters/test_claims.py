"""Every row of the parameter table is implemented, claimed by one loss term or constraint, or refused.

A row is accounted for when it is

* implemented by the core: ``supported=True`` outside the two sections whose
  titles start with "Constraints";
* claimed by exactly one registered loss term (:data:`pypty.regularizers.REGISTRY`),
  hand constraint (:data:`pypty.constraints.REGISTRY`) or reparametrisation
  (:data:`pypty.model.reparam.REPARAMS`, e.g. ``fix_probe_intensity``) through
  the class's ``PARAMS`` tuple, and then ``supported=True``; or
* still refused: ``supported=False`` (accepted only at its default).

Rows of the "Constraints ..." sections are never implemented by the core
silently: they are claimed or refused.
"""
import dataclasses

import pytest

import pypty.constraints
import pypty.regularizers
from pypty.model.reparam import REPARAMS
from pypty.parameters import PARAMETERS

REGISTRIES = {"pypty.regularizers.REGISTRY": pypty.regularizers.REGISTRY,
              "pypty.constraints.REGISTRY": pypty.constraints.REGISTRY,
              "pypty.model.reparam.REPARAMS": REPARAMS}


def claim_problems(table, registries):
    """What is wrong with the claims on the rows of ``table``; an empty list when every row is accounted for.

    Parameters
    ----------
    table : mapping name -> pypty.parameters.Parameter
        The parameter table (:data:`pypty.parameters.PARAMETERS` or fake rows).
    registries : mapping label -> mapping name -> class
        Registries of loss terms and constraints; each class has a tuple ``PARAMS``.

    Returns
    -------
    list of str
        One line per problem: a class without a tuple ``PARAMS``, a claimed
        name missing from the table, a row claimed more than once, a claimed
        row marked ``supported=False``, a "Constraints" row marked
        ``supported=True`` that nothing claims.
    """
    claims = {}
    problems = []
    for label, registry in registries.items():
        for key, cls in registry.items():
            owner = "%s[%r]" % (label, key)
            params = getattr(cls, "PARAMS", None)
            if not isinstance(params, tuple):
                problems.append("%s has no tuple PARAMS (got %r)" % (owner, params))
                continue
            for name in params:
                claims.setdefault(name, []).append(owner)
    for name, owners in claims.items():
        if name not in table:
            problems.append("%r is claimed by %s but is not in the parameter table" % (name, ", ".join(owners)))
    for name, row in table.items():
        owners = claims.get(name, [])
        if len(owners) > 1:
            problems.append("%r is claimed %d times: %s" % (name, len(owners), ", ".join(owners)))
        if owners and not row.supported:
            problems.append("%r is claimed by %s but marked supported=False" % (name, owners[0]))
        if not owners and row.supported and row.section.startswith("Constraints"):
            problems.append("%r (section %r) is marked supported=True but no loss term or constraint claims it"
                            % (name, row.section))
    return problems


def _claiming(*names):
    """A fake loss-term or constraint class that claims ``names``."""
    return type("Fake", (), {"PARAMS": tuple(names)})


def _rows(**supported):
    """Today's table with every "Constraints" row refused, then the ``supported`` flags of some rows set."""
    table = {name: dataclasses.replace(row, supported=False) if row.section.startswith("Constraints") else row
             for name, row in PARAMETERS.items()}
    for name, flag in supported.items():
        table[name] = dataclasses.replace(table[name], supported=flag)
    return table


def test_every_row_is_implemented_claimed_or_refused():
    assert claim_problems(PARAMETERS, REGISTRIES) == []


def test_constraints_sections_exist():
    sections = {p.section for p in PARAMETERS.values() if p.section.startswith("Constraints")}
    assert len(sections) == 2


@pytest.mark.parametrize("table, registries, expected", [
    (_rows(atv_weight=True, atv_q=True), {"loss": {"a": _claiming("atv_weight"),
                                                   "b": _claiming("atv_weight", "atv_q")}},
     ["'atv_weight' is claimed 2 times"]),
    (_rows(atv_weight=True), {"loss": {"a": _claiming("atv_weight")}, "hand": {"b": _claiming("atv_weight")}},
     ["'atv_weight' is claimed 2 times"]),
    (_rows(), {"loss": {"a": _claiming("atv_weight")}}, ["'atv_weight' is claimed by loss['a'] but marked "
                                                          "supported=False"]),
    (_rows(do_charge_flip=True), {}, ["'do_charge_flip' (section \"Constraints That Modify the Object and Probe "
                                      "'By Hand'\") is marked supported=True but no loss term or constraint"]),
    (dict(_rows(), fake_weight=dataclasses.replace(PARAMETERS["atv_weight"], name="fake_weight", supported=True)),
     {}, ["'fake_weight' (section 'Constraints Contributing to the Loss') is marked supported=True"]),
    (_rows(), {"hand": {"a": _claiming("no_such_parameter")}}, ["'no_such_parameter' is claimed by hand['a'] but "
                                                                "is not in the parameter table"]),
    (_rows(), {"hand": {"a": type("NoParams", (), {})}}, ["hand['a'] has no tuple PARAMS"]),
])
def test_claims_check_catches(table, registries, expected):
    problems = claim_problems(table, registries)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected):
        assert problem.startswith(start), problems


def test_claims_check_accepts_a_claimed_supported_row():
    table = _rows(atv_weight=True, atv_q=True, atv_p=True)
    assert claim_problems(table, {"loss": {"atv": _claiming("atv_weight", "atv_q", "atv_p")}, "hand": {}}) == []
