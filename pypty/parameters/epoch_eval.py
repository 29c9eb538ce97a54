"""Restricted evaluator for epoch-dependent ("pypty_lambda") parameters.

Some pypty parameters may change with the epoch number.  A user can give them
as a Python callable ``f(epoch)`` or as a string such as
``"lambda epoch: 1 if epoch > 20 else 0"``.  Strings are parsed with
:mod:`ast` and checked against a small whitelist; the resulting tree is then
evaluated by a tiny interpreter in this module.  Nothing here ever calls
``eval``/``exec`` or compiles user text to a code object, so a parameter file
cannot import modules, touch attributes or open files.

Allowed inside the lambda body:

* constants: int, float, bool, None and str;
* the lambda's single argument (any name) and the constants ``pi``, ``e``,
  ``tau``, ``inf``, ``nan``;
* arithmetic ``+ - * / // % **`` (numbers only; ``|exponent| <= 1000``) and
  unary ``+ -``;
* comparisons ``== != < <= > >= in, not in`` (chains allowed),
  ``and``/``or``/``not`` and ``a if c else b``;
* tuple and list displays;
* positional calls to ``min max abs round int float bool`` and to the math
  functions listed in :data:`ALLOWED_FUNCTIONS`.

Every operation is bounded *before* it is computed, so that no expression
can run for long or use much memory: the text is at most
:data:`MAX_EXPRESSION_LENGTH` characters; integers (literals, operands and
results) have at most :data:`MAX_INT_BITS` bits; ``|exponent| <=``
:data:`MAX_EXPONENT`; ``round(x, n)`` needs ``|n| <=`` :data:`MAX_ROUND_DIGITS`;
``int``/``float`` of a string take at most 1300 characters.  Bounds that
only involve constants are checked when the string is compiled (during
validation); the others when the value is computed.

:func:`resolve` returns the raw value; :func:`pypty.parameters.schedule.resolve`
also checks it against the parameter's row, like a constant.

Public API: :func:`compile_epoch_expression`, :class:`EpochExpression`,
:func:`resolve`.
"""

from __future__ import annotations

import ast
import math
import numbers
import operator
from typing import Any, Callable, Dict

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ALLOWED_CONSTANTS",
    "MAX_EXPONENT",
    "MAX_EXPRESSION_LENGTH",
    "MAX_INT_BITS",
    "MAX_ROUND_DIGITS",
    "EpochExpression",
    "compile_epoch_expression",
    "resolve",
]

#: Largest allowed magnitude of an exponent in ``a ** b``.
MAX_EXPONENT = 1000
#: Largest allowed bit length of any integer (literal, operand or result).
MAX_INT_BITS = 4096
#: Largest allowed length of the text of an expression (characters).
MAX_EXPRESSION_LENGTH = 4000
#: Largest allowed ``|ndigits|`` of ``round(x, ndigits)``.
MAX_ROUND_DIGITS = 20
#: Longest string that ``int``/``float`` may convert (a 4096-bit int has 1234 digits).
_MAX_NUMBER_TEXT = 1300

ALLOWED_FUNCTIONS: Dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "bool": bool,
}
for _fname in (
    "sqrt", "exp", "expm1", "log", "log1p", "log2", "log10",
    "sin", "cos", "tan", "asin", "acos", "atan", "atan2",
    "sinh", "cosh", "tanh", "floor", "ceil", "trunc", "fabs",
    "hypot", "copysign", "degrees", "radians", "isfinite", "isinf", "isnan",
):
    ALLOWED_FUNCTIONS[_fname] = getattr(math, _fname)
del _fname

ALLOWED_CONSTANTS: Dict[str, float] = {
    "pi": math.pi,
    "e": math.e,
    "tau": math.tau,
    "inf": math.inf,
    "nan": math.nan,
}

_BINARY_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: None,  # handled by _safe_pow
}
_UNARY_OPS = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE_OPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}

_ALLOWED_SUMMARY = (
    "allowed: numbers, strings, True/False/None, the lambda argument, "
    "pi/e/tau/inf/nan, + - * / // %% ** (|exponent| <= %d), comparisons, "
    "and/or/not, 'a if cond else b', tuples/lists, and positional calls to %s "
    "(round digits |n| <= %d, integers up to %d bits, at most %d characters)"
    % (MAX_EXPONENT, ", ".join(ALLOWED_FUNCTIONS), MAX_ROUND_DIGITS, MAX_INT_BITS, MAX_EXPRESSION_LENGTH)
)


def _describe_node(node: ast.AST) -> str:
    """Short human name of an AST node type, e.g. 'an attribute access'."""
    names = {
        ast.Attribute: "an attribute access",
        ast.Subscript: "a subscript",
        ast.Lambda: "a nested lambda",
        ast.ListComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a generator expression",
        ast.JoinedStr: "an f-string",
        ast.NamedExpr: "an assignment expression (:=)",
        ast.Starred: "a starred argument",
        ast.Dict: "a dict display",
        ast.Set: "a set display",
        ast.Await: "an await",
        ast.Yield: "a yield",
        ast.YieldFrom: "a yield",
        ast.Name: "a name",
        ast.Call: "a call",
    }
    for cls, text in names.items():
        if isinstance(node, cls):
            return text
    return "a %s expression" % type(node).__name__


def _is_number(value: Any) -> bool:
    """True for real/complex numbers (bools included), False for str, list..."""
    return isinstance(value, numbers.Number)


def _check_exponent(exponent: Any) -> None:
    """Raise ValueError unless ``exponent`` is a real number with |exponent| <= MAX_EXPONENT."""
    if not _is_number(exponent) or isinstance(exponent, complex) or not abs(exponent) <= MAX_EXPONENT:
        raise ValueError("exponent %r is outside |exponent| <= %d" % (exponent, MAX_EXPONENT))


def _check_int(value: Any) -> Any:
    """Return ``value``; raise ValueError for an int (not bool) of more than MAX_INT_BITS bits."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) \
            and int(value).bit_length() > MAX_INT_BITS:
        raise ValueError("integer of %d bits exceeds the limit of %d bits"
                         % (int(value).bit_length(), MAX_INT_BITS))
    return value


def _int_bits(value: Any) -> int:
    """Bit length of an integer operand, 0 for other numbers."""
    return int(value).bit_length() if isinstance(value, numbers.Integral) else 0


def _safe_pow(base: Any, exponent: Any) -> Any:
    """``base ** exponent`` with DoS guards.

    Raises ValueError when ``|exponent| > MAX_EXPONENT`` or when an integer
    power would exceed MAX_INT_BITS bits (checked before computing);
    TypeError for non-numbers.
    """
    if not (_is_number(base) and _is_number(exponent)):
        raise TypeError("'**' needs two numbers, got %s and %s"
                        % (type(base).__name__, type(exponent).__name__))
    _check_exponent(exponent)
    if isinstance(base, numbers.Integral) and isinstance(exponent, numbers.Integral) and exponent > 0:
        bits = int(abs(int(base))).bit_length() * int(exponent)
        if bits > MAX_INT_BITS:
            raise ValueError("integer power %r ** %r is too large" % (base, exponent))
    return base ** exponent


def _safe_binary(op: ast.operator, left: Any, right: Any) -> Any:
    """``left <op> right`` for numbers, integer sizes bounded before and after computing."""
    if isinstance(op, ast.Pow):
        return _safe_pow(left, right)
    if not (_is_number(left) and _is_number(right)):
        raise TypeError("arithmetic needs numbers, got %s and %s"
                        % (type(left).__name__, type(right).__name__))
    _check_int(left)
    _check_int(right)
    if isinstance(op, ast.Mult) and _int_bits(left) + _int_bits(right) > MAX_INT_BITS + 1:
        raise ValueError("integer product of %d and %d bits exceeds the limit of %d bits"
                         % (_int_bits(left), _int_bits(right), MAX_INT_BITS))
    return _check_int(_BINARY_OPS[type(op)](left, right))


def _check_round_digits(ndigits: Any) -> None:
    """Raise unless ``ndigits`` is None or an int with |ndigits| <= MAX_ROUND_DIGITS."""
    if ndigits is None:
        return
    if not isinstance(ndigits, numbers.Integral) or isinstance(ndigits, bool):
        raise TypeError("round() digits must be an int, got %s" % type(ndigits).__name__)
    if abs(int(ndigits)) > MAX_ROUND_DIGITS:
        raise ValueError("round() digits %d are outside |digits| <= %d" % (ndigits, MAX_ROUND_DIGITS))


def _check_call(fname: str, args: list) -> None:
    """Bounds of a whitelisted call, checked before it is computed (raises ValueError/TypeError)."""
    for a in args:
        _check_int(a)
    if fname == "round" and len(args) >= 2:
        _check_round_digits(args[1])
    if fname in ("int", "float") and args and isinstance(args[0], str) and len(args[0]) > _MAX_NUMBER_TEXT:
        raise ValueError("%s() of a string of %d characters (at most %d)" % (fname, len(args[0]), _MAX_NUMBER_TEXT))


def _safe_call(fname: str, args: list) -> Any:
    """A whitelisted call with its bounds checked first and its integer result bounded."""
    _check_call(fname, args)
    return _check_int(ALLOWED_FUNCTIONS[fname](*args))


def _constant_value(node: ast.AST) -> Any:
    """Evaluate an already checked subtree that does not use the argument."""
    return EpochExpression("", "", "", node)(None)


class _Rejected(Exception):
    """Internal: a node outside the whitelist (message is the reason)."""

    def __init__(self, node: ast.AST, reason: str):
        super().__init__(reason)
        self.node = node
        self.reason = reason


class EpochExpression:
    """A compiled, whitelisted ``lambda <arg>: <expr>`` string.

    Call it with the epoch number (int) to get the value.  Attributes:
    ``source`` (the original text, used for JSON export), ``name`` (the
    parameter it belongs to) and ``argname`` (the lambda's argument).
    Evaluation errors (ZeroDivisionError, TypeError, ValueError for too large
    powers, ...) propagate to the caller; :func:`resolve` wraps them.
    """

    __slots__ = ("source", "name", "argname", "_body")

    def __init__(self, source: str, name: str, argname: str, body: ast.AST):
        self.source = source
        self.name = name
        self.argname = argname
        self._body = body

    def __call__(self, epoch: int) -> Any:
        return self._eval(self._body, epoch)

    def __repr__(self) -> str:
        return "EpochExpression(%r)" % self.source

    def _eval(self, node: ast.AST, epoch: Any) -> Any:
        """Interpret one whitelisted node (the tree was checked at compile time)."""
        ev = self._eval
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id == self.argname:
                return epoch
            return ALLOWED_CONSTANTS[node.id]
        if isinstance(node, ast.BinOp):
            return _safe_binary(node.op, ev(node.left, epoch), ev(node.right, epoch))
        if isinstance(node, ast.UnaryOp):
            operand = ev(node.operand, epoch)
            if not isinstance(node.op, ast.Not) and not _is_number(operand):
                raise TypeError("unary %s needs a number, got %s"
                                % (type(node.op).__name__, type(operand).__name__))
            return _check_int(_UNARY_OPS[type(node.op)](operand))
        if isinstance(node, ast.BoolOp):
            is_and = isinstance(node.op, ast.And)
            value = None
            for sub in node.values:
                value = ev(sub, epoch)
                if bool(value) != is_and:  # short-circuit like Python
                    return value
            return value
        if isinstance(node, ast.Compare):
            left = ev(node.left, epoch)
            for op, comparator in zip(node.ops, node.comparators):
                right = ev(comparator, epoch)
                if not _COMPARE_OPS[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body, epoch) if ev(node.test, epoch) else ev(node.orelse, epoch)
        if isinstance(node, ast.Tuple):
            return tuple(ev(elt, epoch) for elt in node.elts)
        if isinstance(node, ast.List):
            return [ev(elt, epoch) for elt in node.elts]
        if isinstance(node, ast.Call):
            return _safe_call(node.func.id, [ev(arg, epoch) for arg in node.args])
        raise AssertionError("unchecked node %s" % type(node).__name__)  # pragma: no cover


def _check_tree(node: ast.AST, argname: str) -> bool:
    """Walk ``node`` against the whitelist; return True if it uses the argument.

    Raises _Rejected for the first node outside the whitelist.
    """
    check = _check_tree
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int) and not isinstance(node.value, bool) \
                and node.value.bit_length() > MAX_INT_BITS:
            raise _Rejected(node, "an integer literal of %d bits (at most %d)"
                            % (node.value.bit_length(), MAX_INT_BITS))
        if node.value is None or isinstance(node.value, (bool, int, float, str)):
            return False
        raise _Rejected(node, "a constant of type %s" % type(node.value).__name__)
    if isinstance(node, ast.Name):
        if node.id == argname:
            return True
        if node.id in ALLOWED_CONSTANTS:
            return False
        if node.id in ALLOWED_FUNCTIONS:
            raise _Rejected(node, "the function %r used without calling it" % node.id)
        raise _Rejected(node, "the unknown name %r" % node.id)
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY_OPS:
            raise _Rejected(node, "the operator %s" % type(node.op).__name__)
        left_uses = check(node.left, argname)
        right_uses = check(node.right, argname)
        if isinstance(node.op, ast.Pow) and not right_uses:
            # constant exponent: test it now so that '10**10**10' fails early
            try:
                exponent = _constant_value(node.right)
                if left_uses:
                    _check_exponent(exponent)
                else:
                    _safe_pow(_constant_value(node.left), exponent)
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise _Rejected(node, "a power (%s)" % exc) from None
        return left_uses or right_uses
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY_OPS:
            raise _Rejected(node, "the operator %s" % type(node.op).__name__)
        return check(node.operand, argname)
    if isinstance(node, ast.BoolOp):
        return any([check(v, argname) for v in node.values])
    if isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE_OPS:
                raise _Rejected(node, "the comparison %s" % type(op).__name__)
        return any([check(v, argname) for v in [node.left, *node.comparators]])
    if isinstance(node, ast.IfExp):
        return any([check(v, argname) for v in (node.test, node.body, node.orelse)])
    if isinstance(node, (ast.Tuple, ast.List)):
        return any([check(v, argname) for v in node.elts])
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in ALLOWED_FUNCTIONS \
                or node.func.id == argname:
            what = ("%r" % node.func.id) if isinstance(node.func, ast.Name) \
                else _describe_node(node.func)
            raise _Rejected(node, "a call of %s" % what)
        if node.keywords:
            raise _Rejected(node, "a keyword argument")
        uses = [check(v, argname) for v in node.args]
        # bounds on constant arguments (round's digits, the text given to int/float) are checked now
        bounded = {"round": 1, "int": 0, "float": 0}.get(node.func.id)
        if bounded is not None and bounded < len(uses) and not uses[bounded]:
            try:
                value = _constant_value(node.args[bounded])
                _check_call(node.func.id, [0, value] if node.func.id == "round" else [value])
            except (ArithmeticError, ValueError, TypeError) as exc:
                raise _Rejected(node, "a call of %r (%s)" % (node.func.id, exc)) from None
        return any(uses)
    raise _Rejected(node, _describe_node(node))


def compile_epoch_expression(source: str, name: str) -> EpochExpression:
    """Compile ``"lambda <arg>: <expr>"`` for parameter ``name``.

    Parameters
    ----------
    source : str
        Text of a one-argument lambda, e.g. ``"lambda x: min(1, x / 10)"``.
    name : str
        Parameter name, used in error messages.

    Returns
    -------
    EpochExpression
        Callable ``f(epoch) -> value`` with attribute ``.source``.

    Raises
    ------
    ValueError
        On a syntax error, on anything that is not a single lambda of one
        plain positional argument, or on any construct outside the whitelist
        (the message names the parameter, quotes the fragment and lists what
        is allowed).
    """
    if not isinstance(source, str):
        raise ValueError("pypty parameter '%s': epoch expression must be a string, got %s"
                         % (name, type(source).__name__))
    text = source.strip()
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValueError("pypty parameter '%s': epoch expression of %d characters is too long (at most %d); "
                         "use a Python callable for long schedules (e.g. "
                         "pypty.initialize.epoch_schedule)" % (name, len(text), MAX_EXPRESSION_LENGTH))
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError("pypty parameter '%s': syntax error in epoch expression %r: %s"
                         % (name, source, exc.msg)) from None
    except (RecursionError, MemoryError):
        raise ValueError("pypty parameter '%s': epoch expression %r is too deeply nested"
                         % (name, source)) from None
    lam = tree.body
    if not isinstance(lam, ast.Lambda):
        raise ValueError("pypty parameter '%s': epoch expression %r must be a lambda such as "
                         "'lambda epoch: 1 if epoch > 20 else 0'" % (name, source))
    args = lam.args
    if (len(args.args) != 1 or args.posonlyargs or args.kwonlyargs or args.vararg
            or args.kwarg or args.defaults or args.kw_defaults):
        raise ValueError("pypty parameter '%s': epoch expression %r must take exactly one "
                         "argument (the epoch), without defaults" % (name, source))
    argname = args.args[0].arg
    try:
        _check_tree(lam.body, argname)
    except RecursionError:
        raise ValueError("pypty parameter '%s': epoch expression %r is too deeply nested"
                         % (name, source)) from None
    except _Rejected as rej:
        fragment = ast.get_source_segment(text, rej.node) or ast.dump(rej.node)[:80]
        raise ValueError("pypty parameter '%s': epoch expression %r contains %s in %r, which is "
                         "not allowed; %s" % (name, source, rej.reason, fragment, _ALLOWED_SUMMARY)) from None
    return EpochExpression(source, name, argname, lam.body)


def resolve(name: str, value: Any, epoch: int) -> Any:
    """Value of parameter ``name`` at ``epoch``.

    ``value`` may be a constant (returned unchanged; strings and classes are
    constants too, so call ``pypty.parameters.validate`` first to compile
    lambda strings), a callable ``f(epoch)`` or an :class:`EpochExpression`.

    Raises
    ------
    RuntimeError
        If the callable raises; the message names the parameter and the epoch
        and the original exception is chained (``from exc``).
    """
    if not callable(value) or isinstance(value, type):
        return value
    try:
        return value(epoch)
    except Exception as exc:
        raise RuntimeError("pypty parameter '%s' raised at epoch %s: %s: %s"
                           % (name, epoch, type(exc).__name__, exc)) from exc
