"""Values of epoch-dependent parameters are checked like constants when resolved; the evaluator is bounded.

Issue 15, classes 4 and 5 (evaluator part): a callable or lambda string returning NaN, a negative weight or a
string for a switch used to run to the end; ``round(1, -10**9)`` passed the whitelist and never returned.
"""
import math
import time

import numpy as np
import pytest

from pypty.constraints.base import ParamsConstraint
from pypty.parameters import PyptyParameterError, validate
from pypty.parameters.epoch_eval import (MAX_EXPRESSION_LENGTH, MAX_INT_BITS, MAX_ROUND_DIGITS,
                                         compile_epoch_expression)
from pypty.parameters.schedule import resolve
from pypty.regularizers.base import ParamsTerm


class _Bk:
    xp = np


# ---------------------------------------------------------------- values checked like constants

@pytest.mark.parametrize("value, returned", [
    ("lambda e: nan if e >= 3 else 1", "nan"),
    ("lambda e: -1.5 if e >= 3 else 1", "-1.5"),
    (lambda e: math.nan if e >= 3 else 1.0, "nan"),
    (lambda e: -2.0 if e >= 3 else 1.0, "-2.0"),
    (lambda e: math.inf if e >= 3 else 1.0, "inf"),
])
def test_loss_weight_nan_or_negative_is_refused_at_its_epoch(value, returned):
    p = validate({"loss_weight": value})
    assert resolve("loss_weight", p["loss_weight"], 2) == 1.0
    with pytest.raises(PyptyParameterError) as info:
        resolve("loss_weight", p["loss_weight"], 3)
    msg = str(info.value)
    assert msg.startswith("parameter 'loss_weight' at epoch 3: ")
    assert "returned %s" % returned in msg and msg.endswith("expected a float >= 0")
    assert ("lambda 'lambda e:" in msg) == isinstance(value, str)


@pytest.mark.parametrize("value", ["lambda e: 'yes'", lambda e: "yes", lambda e: 2, lambda e: None])
def test_switch_returning_a_non_flag_is_refused(value):
    p = validate({"update_obj": value})
    with pytest.raises(PyptyParameterError, match=r"parameter 'update_obj' at epoch 5: .* returned .*, expected "
                                                  r"a bool \(or 0/1\)"):
        resolve("update_obj", p["update_obj"], 5)


def test_returned_values_are_normalised_like_constants():
    p = validate({"update_obj": "lambda e: 1 if e > 2 else 0", "sequence": lambda e: np.arange(3),
                  "hist_length": "lambda e: inf", "loss_weight": lambda e: np.float32(0.5)})
    assert resolve("update_obj", p["update_obj"], 3) is True
    assert resolve("update_obj", p["update_obj"], 0) is False
    assert resolve("sequence", p["sequence"], 0) == [0, 1, 2]
    assert resolve("hist_length", p["hist_length"], 0) == math.inf
    assert type(resolve("loss_weight", p["loss_weight"], 0)) is float


def test_other_rows_and_names_outside_the_table():
    p = validate({"wolfe_c1_constant": lambda e: 1.5, "sequence": lambda e: [-1], "atv_q": "lambda e: 3"})
    with pytest.raises(PyptyParameterError, match=r"'wolfe_c1_constant' at epoch 0: .*expected a float in \(0, 1\)"):
        resolve("wolfe_c1_constant", p["wolfe_c1_constant"], 0)
    with pytest.raises(PyptyParameterError, match=r"'sequence' at epoch 0: .*expected a list of ints >= 0"):
        resolve("sequence", p["sequence"], 0)
    with pytest.raises(PyptyParameterError, match=r"'atv_q' at epoch 1: .*returned 3 \(int\)"):
        resolve("atv_q", p["atv_q"], 1)
    assert resolve("not_a_parameter", lambda e: math.nan, 0) != 0  # unknown names: the raw value
    assert resolve("loss_weight", 0.5, 3) == 0.5  # constants were checked by validate: returned as they are


def test_raising_callables_still_give_runtime_errors():
    def bad(epoch):
        raise ZeroDivisionError("x")

    with pytest.raises(RuntimeError, match="'loss_weight' raised at epoch 4"):
        resolve("loss_weight", bad, 4)


def test_terms_and_constraints_resolve_checked_values():
    p = validate({"atv_weight": "lambda e: -1 if e == 7 else 0.1", "do_charge_flip": lambda e: "on"})

    class Term(ParamsTerm):
        name, PARAMS, WEIGHT = "atv", ("atv_weight",), "atv_weight"

    class Flip(ParamsConstraint):
        name, PARAMS, SWITCH = "flip", ("do_charge_flip",), "do_charge_flip"

    term, flip = Term(p, _Bk()), Flip(p, _Bk())
    assert term.weight(6) == 0.1
    with pytest.raises(PyptyParameterError, match="parameter 'atv_weight' at epoch 7: .*returned -1"):
        term.active(7)
    with pytest.raises(PyptyParameterError, match="parameter 'do_charge_flip' at epoch 0: .*returned 'on'"):
        flip.active(0)


def test_resolving_stays_cheap():
    p = validate({"loss_weight": "lambda e: min(1, e / 10)"})
    t0 = time.perf_counter()
    for epoch in range(2000):
        resolve("loss_weight", p["loss_weight"], epoch)
    assert (time.perf_counter() - t0) / 2000 < 1e-4  # about 3 us on a laptop


# ---------------------------------------------------------------- evaluator bounds

def _refused_quickly(source, match, name="loss_weight"):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match) as info:
        compile_epoch_expression(source, name)
    assert time.perf_counter() - t0 < 0.05
    assert "'%s'" % name in str(info.value)
    return str(info.value)


def test_round_digits_are_bounded_before_computing():
    msg = _refused_quickly("lambda x: round(1, -10**9)", r"round\(\) digits -1000000000 are outside")
    assert "|digits| <= %d" % MAX_ROUND_DIGITS in msg
    with pytest.raises(PyptyParameterError, match="'loss_weight'.*round"):
        validate({"loss_weight": "lambda x: round(1, -10**9)"})
    f = compile_epoch_expression("lambda x: round(1, -x)", "loss_weight")  # digits known only at run time
    assert f(3) == 0
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="digits"):
        f(10**9)
    assert time.perf_counter() - t0 < 0.01
    with pytest.raises(RuntimeError, match="'loss_weight' raised at epoch 1000000000"):
        resolve("loss_weight", f, 10**9)
    assert compile_epoch_expression("lambda x: round(x / 3, 2)", "p")(1) == 0.33


def test_huge_exponents_and_integers_are_refused():
    _refused_quickly("lambda x: 2 ** 10**6", "exponent 1000000 is outside")
    _refused_quickly("lambda x: x ** -5000", "exponent -5000 is outside")
    _refused_quickly("lambda x: 0x" + "f" * 1100, "integer literal of 4400 bits")
    f = compile_epoch_expression("lambda x: 10 ** (x * 10**6)", "p")
    with pytest.raises(ValueError, match="exponent"):
        f(1)
    g = compile_epoch_expression("lambda x: 3**1000 * 3**1000 * 3**1000 * x", "p")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="limit of %d bits" % MAX_INT_BITS):
        g(1)
    assert time.perf_counter() - t0 < 0.01
    h = compile_epoch_expression("lambda x: x * x", "p")
    with pytest.raises(ValueError, match="bits"):
        h(2**3000)


def test_over_long_expression_and_number_text_are_refused():
    long_source = "lambda e: " + " + ".join(["e"] * MAX_EXPRESSION_LENGTH)
    msg = _refused_quickly(long_source, "too long")
    assert "at most %d" % MAX_EXPRESSION_LENGTH in msg
    with pytest.raises(PyptyParameterError, match="'hist_length'.*too long"):
        validate({"hist_length": long_source})
    _refused_quickly("lambda e: int('" + "9" * 1500 + "')", r"int\(\) of a string of 1500 characters")
    f = compile_epoch_expression("lambda e: float('1e-3') * e", "p")
    assert f(2) == 0.002


def test_ordinary_schedules_are_unaffected():
    src = "lambda e: " + " else ".join("%d if e < %d" % (i // 10 % 2, i) for i in range(10, 1000, 10)) + " else 1"
    assert 1000 < len(src) < MAX_EXPRESSION_LENGTH
    step = compile_epoch_expression(src, "update_obj")
    assert [step(e) for e in (0, 10, 985, 2000)] == [1, 0, 1, 1]
    f = compile_epoch_expression("lambda e: 4 ** 1000 // 2 ** 999 + round(1234.5678, -2) + round(e, 20)", "p")
    assert f(1) == 2 ** 1001 + 1200.0 + 1
