"""Tests of the restricted epoch-expression evaluator (pypty.parameters.epoch_eval)."""

import math

import pytest

from pypty.parameters.epoch_eval import EpochExpression, compile_epoch_expression, resolve


@pytest.mark.parametrize(
    "source, expected",
    [
        ("lambda x: 1 if x > 20 else 0", {0: 0, 20: 0, 21: 1, 100: 1}),
        ("lambda epoch: min(1, epoch/10)", {0: 0.0, 5: 0.5, 10: 1.0, 50: 1}),
        ("lambda e: e // 3 + e % 3", {0: 0, 4: 2, 9: 3}),
        ("lambda x: 2 ** x - 1", {0: 0, 3: 7, 10: 1023}),
        ("lambda x: -x if not x else +x", {0: 0, 7: 7}),
        ("lambda x: 0 < x <= 10", {0: False, 1: True, 10: True, 11: False}),
        ("lambda x: x >= 5 and x < 8 or x == 100", {4: False, 5: True, 8: False, 100: True}),
        ("lambda x: round(sqrt(x), 2)", {2: 1.41, 16: 4.0}),
        ("lambda x: floor(log10(x + 1))", {0: 0, 9: 1, 99: 2}),
        ("lambda x: max(abs(-x), int(3.7), float('2.5'), bool(x))", {0: 3, 10: 10}),
        ("lambda x: cos(pi * x) + e - e", {0: 1.0, 1: -1.0}),
        ("lambda x: inf if x > 3 else 10", {0: 10, 4: math.inf}),
        ("lambda x: [0, 1, x] if x else None", {0: None, 2: [0, 1, 2]}),
        ("lambda x: (x, 'lsq')", {1: (1, "lsq")}),
        ("lambda x: x in (1, 2) or x not in [5, 6]", {1: True, 5: False, 7: True}),
        ("  lambda epoch: True  ", {0: True}),
    ],
)
def test_values_at_several_epochs(source, expected):
    f = compile_epoch_expression(source, "some_param")
    assert isinstance(f, EpochExpression)
    assert f.source == source
    for epoch, value in expected.items():
        result = f(epoch)
        assert result == pytest.approx(value) if isinstance(value, float) else result == value
        assert type(result) is type(value) or isinstance(value, float)


def test_argument_may_shadow_constant_name():
    f = compile_epoch_expression("lambda e: e * 2", "p")
    assert f(3) == 6


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("lambda x: __import__('os')", "__import__('os')"),
        ("lambda x: x.__class__", "x.__class__"),
        ("lambda x: open('f')", "open('f')"),
        ("lambda x: [i for i in range(3)]", "[i for i in range(3)]"),
        ("lambda x: 10**10**10", "10**10**10"),
        ("lambda x: x ** 5000", "x ** 5000"),
        ("lambda x: (lambda y: y)(x)", "(lambda y: y)(x)"),
        ("lambda x: min(x, key=abs)", "min(x, key=abs)"),
        ("lambda x: min(*[1, 2])", "*[1, 2]"),
        ("lambda x: f'{x}'", "f'{x}'"),
        ("lambda x: (y := 3)", "y := 3"),
        ("lambda x: x[0]", "x[0]"),
        ("lambda x: {1: 2}", "{1: 2}"),
        ("lambda x: y", "y"),
        ("lambda x: min", "min"),
        ("lambda x: x << 2", "x << 2"),
        ("lambda x: x is None", "x is None"),
        ("lambda x: b'abc'", "b'abc'"),
        ("lambda x: x(1)", "x(1)"),
        ("lambda x: math.sqrt(x)", "math.sqrt(x)"),
    ],
)
def test_whitelist_rejections_name_parameter_and_fragment(source, fragment):
    with pytest.raises(ValueError) as info:
        compile_epoch_expression(source, "update_probe")
    message = str(info.value)
    assert "'update_probe'" in message
    assert repr(fragment) in message
    assert "allowed" in message


@pytest.mark.parametrize(
    "source",
    ["lambda x: 1 +", "lambda x:", "x + 1", "lambda: 1", "lambda x, y: x", "lambda x=1: x",
     "lambda *a: 1", "1; import os"],
)
def test_syntax_and_shape_errors_name_parameter(source):
    with pytest.raises(ValueError, match="'loss_weight'"):
        compile_epoch_expression(source, "loss_weight")


def test_non_string_source_rejected():
    with pytest.raises(ValueError, match="'p'"):
        compile_epoch_expression(lambda x: x, "p")


def test_deep_nesting_is_a_value_error():
    with pytest.raises(ValueError, match="'p'"):
        compile_epoch_expression("lambda x: " + "+".join(["1"] * 20000), "p")


def test_runtime_power_cap_and_string_arithmetic():
    f = compile_epoch_expression("lambda x: 2 ** x", "p")
    assert f(10) == 1024
    with pytest.raises(ValueError):
        f(5000)
    g = compile_epoch_expression("lambda x: 'a' * x", "p")
    with pytest.raises(TypeError):
        g(10**9)


def test_resolve_constants_callables_and_expressions():
    assert resolve("epoch_max", 5, 3) == 5
    assert resolve("algorithm", "lsq", 3) == "lsq"
    assert resolve("sequence", None, 3) is None
    assert resolve("force_dataset_dtype", float, 3) is float  # classes are constants
    assert resolve("update_probe", lambda epoch: epoch > 2, 3) is True
    expr = compile_epoch_expression("lambda x: x * 10", "hist_length")
    assert resolve("hist_length", expr, 4) == 40


def test_resolve_wraps_exceptions_with_parameter_name():
    def bad(epoch):
        raise KeyError("boom")

    with pytest.raises(RuntimeError, match=r"pypty parameter 'update_obj' raised at epoch 7") as info:
        resolve("update_obj", bad, 7)
    assert isinstance(info.value.__cause__, KeyError)

    expr = compile_epoch_expression("lambda x: 1 / x", "loss_weight")
    with pytest.raises(RuntimeError, match="'loss_weight' raised at epoch 0") as info:
        resolve("loss_weight", expr, 0)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
