"""A device-strict stand-in for CuPy on the CPU (``PYPTY_DEVICE=strict``), with transfer and sync counters.

pypty's CuPy branches cannot run on a machine without a GPU, and NumPy
forgives everything CuPy refuses.  This module provides an array type,
:class:`StrictArray`, that wraps a NumPy array and behaves like a device
array, and a namespace :data:`xp` that plays the part of the ``cupy`` module
(and the few ``cupy.cuda``/memory-pool APIs pypty uses), so that the whole
code base runs its GPU branches on the CPU and fails wherever CuPy would.

What raises ``TypeError`` (as CuPy does, or stricter):

* implicit conversion to NumPy: ``np.asarray(a)``, ``np.array(a)``,
  ``a.__array__()``, ``h5py``/``np.save`` writes, ``scipy`` functions
  (``scipy.fft.fft2(a)``, ``scipy.ndimage...``) -- CuPy raises TypeError;
* NumPy ufuncs and NumPy functions on a device array (``np.exp(a)``,
  ``np.sum(a)``, ``np.fft.fft2(a)``) -- stricter than CuPy, which dispatches
  some of them through ``__array_ufunc__``/``__array_function__``: pypty
  writes ``bk.xp.`` code, so a ``np.`` call on a device array is a bug
  (except the functions that read metadata only: ``np.shape``, ``np.ndim``,
  ``np.size``, ``np.iscomplexobj``, ``np.isrealobj``, ``np.result_type``,
  ``np.shares_memory``);
* ``float()``, ``int()``, ``complex()``, ``bool()`` of an array that is not
  0-d;
* host/device mixing: a NumPy array (of any dimension, 0-d included) as an
  operand of a device array's arithmetic/comparison, or as an argument of an
  :data:`xp` function other than the explicit uploads ``xp.asarray``/
  ``xp.array`` (NumPy *scalars* and Python numbers are fine, as in CuPy);
* NumPy-only functions that CuPy does not have (:data:`NUMPY_ONLY`):
  ``AttributeError``, as ``cupy.<name>`` would.

What is allowed and counted (:class:`Counters`, one count per event, by kind
and by call site, the first frame of pypty outside this module and
:mod:`pypty.backend`):

* ``h2d``: explicit uploads (``xp.asarray``/``xp.array`` of host data,
  ``bk.asarray``), and the implicit ones CuPy also performs: a NumPy or list
  index (``a[np_idx]``), a NumPy value assigned into a device array
  (``a[...] = np_arr``, ``scatter_add`` values);
* ``d2h``: explicit downloads (``xp.asnumpy``, ``bk.to_numpy``, ``a.get()``,
  ``a.tolist()``, ``repr``/``str``); each also blocks until the device is
  done, so it is not counted again as a sync;
* ``sync``: scalar reads that block on the device (``float``/``int``/
  ``complex``/``bool``/``.item()``/``format`` of a 0-d array), and operations
  whose output size depends on the data (boolean-mask indexing,
  ``nonzero``, ``unique``, ``argwhere``, one-argument ``where``), which
  CuPy can only size after a device->host read.

``StrictArray`` computes with NumPy underneath, so results are those of NumPy
(FFTs through ``scipy.fft``, which keeps single precision, as cuFFT does).
"""
from __future__ import annotations

import collections
import functools
import os
import sys
import types

import numpy as np
import scipy.fft

__all__ = ["StrictArray", "Counters", "xp", "counters", "NUMPY_ONLY", "DEVICE_BYTES"]

_HERE = os.path.abspath(__file__)
_PKG_DIR = os.path.dirname(_HERE)
_SKIP_FILES = {_HERE, os.path.join(_PKG_DIR, "backend.py")}
_SCALARS = (bool, int, float, complex, np.generic)

#: NumPy names that CuPy does not provide (``cupy.<name>`` is an AttributeError); the strict namespace refuses them.
#: Deliberately short (names that are host-only by nature): a name missing here is forwarded to NumPy.
NUMPY_ONLY = frozenset({
    "errstate", "seterr", "geterr", "seterrcall", "geterrcall", "frompyfunc", "nditer", "ndenumerate", "ma",
    "char", "rec", "ctypeslib", "memmap", "matrix", "asmatrix", "recarray", "chararray", "busday_count",
    "is_busday", "datetime_as_string", "emath",
})


# ============================================================================ counters
class Counters:
    """Transfers and synchronisations of the strict backend, by kind and by call site.

    Kinds: ``"h2d"`` (host -> device), ``"d2h"`` (device -> host) and
    ``"sync"`` (blocking scalar reads and data-dependent output sizes); see
    the module docstring.  A call site is ``"path:line (function)"`` of the
    first frame inside pypty outside this module and ``pypty/backend.py``
    (or the first such frame anywhere, e.g. a test, if none is in pypty).
    """

    KINDS = ("h2d", "d2h", "sync")

    def __init__(self):
        self._n = collections.Counter()  # (kind, site) -> events
        self._bytes = collections.Counter()  # kind -> bytes

    def reset(self) -> None:
        """Forget every count."""
        self._n.clear()
        self._bytes.clear()

    def record(self, kind: str, nbytes: int = 0) -> None:
        """Count one event of ``kind`` (``nbytes`` moved) at the caller's pypty call site."""
        if kind not in self.KINDS:
            raise ValueError(f"unknown counter kind {kind!r}")
        self._n[(kind, _call_site())] += 1
        self._bytes[kind] += int(nbytes)

    def totals(self) -> dict:
        """``{kind: events}`` for every kind (zeros included)."""
        out = dict.fromkeys(self.KINDS, 0)
        for (kind, _site), n in self._n.items():
            out[kind] += n
        return out

    def bytes(self) -> dict:
        """``{kind: bytes moved}`` (0 for syncs)."""
        return {k: int(self._bytes.get(k, 0)) for k in self.KINDS}

    def by_site(self, kind: str | None = None) -> dict:
        """``{(kind, site): events}``, or ``{site: events}`` for one ``kind``; most frequent first."""
        items = sorted(self._n.items(), key=lambda kv: (-kv[1], kv[0]))
        if kind is None:
            return dict(items)
        return {site: n for (k, site), n in items if k == kind}

    def snapshot(self) -> dict:
        """A copy of the counts, ``{"totals": ..., "bytes": ..., "sites": {kind: {site: n}}}``."""
        return {"totals": self.totals(), "bytes": self.bytes(),
                "sites": {k: self.by_site(k) for k in self.KINDS}}

    def __repr__(self):
        return f"Counters({self.totals()})"


def _call_site() -> str:
    f = sys._getframe(1)
    first = None
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if fn not in _SKIP_FILES:
            if first is None:
                first = f
            if fn.startswith(_PKG_DIR + os.sep):
                first = f
                break
        f = f.f_back
    if first is None:
        return "?"
    fn = os.path.abspath(first.f_code.co_filename)
    base = os.path.dirname(_PKG_DIR)
    rel = os.path.relpath(fn, base) if fn.startswith(base + os.sep) else fn
    return f"{rel}:{first.f_lineno} ({first.f_code.co_name})"


#: The process-wide counters of the strict backend (``bk.counters``).
counters = Counters()


def _nbytes(a) -> int:
    return int(getattr(a, "nbytes", 0) or 0)


# ============================================================================ wrapping
def _refuse_host(obj, where):
    raise TypeError(f"{where}: a NumPy array ({type(obj).__name__} shape {np.shape(obj)}) was passed where a device "
                    f"array is required (CuPy raises TypeError for host arrays here; upload explicitly with "
                    f"bk.asarray / xp.asarray)")


def _unwrap(obj, where):
    """StrictArray -> ndarray (recursively in lists, tuples and dicts); a NumPy array raises TypeError."""
    if type(obj) is StrictArray:
        return obj._a
    if isinstance(obj, np.ndarray):
        _refuse_host(obj, where)
    if isinstance(obj, (list, tuple)):
        out = [_unwrap(o, where) for o in obj]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, dict):
        return {k: _unwrap(v, where) for k, v in obj.items()}
    return obj


def _peek(obj):
    """StrictArray -> ndarray (recursively), host arrays kept: for functions that read metadata only."""
    if type(obj) is StrictArray:
        return obj._a
    if isinstance(obj, (list, tuple)):
        out = [_peek(o) for o in obj]
        return out if isinstance(obj, list) else tuple(out)
    if isinstance(obj, dict):
        return {k: _peek(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    """ndarray / NumPy scalar -> StrictArray (recursively in tuples and lists); anything else unchanged."""
    if isinstance(obj, np.ndarray):
        return StrictArray(obj)
    if isinstance(obj, np.generic):
        return StrictArray(np.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _has_host_array(obj) -> bool:
    if isinstance(obj, np.ndarray):
        return True
    if isinstance(obj, (list, tuple)):
        return any(_has_host_array(o) for o in obj)
    return False


def _index(key, where):
    """Unwrap an index; host index arrays/lists are uploaded implicitly (counted h2d), as CuPy does."""
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for k in parts:
        if type(k) is StrictArray:
            if k._a.dtype == np.bool_:
                counters.record("sync")  # output size read back from the device
            out.append(k._a)
        elif isinstance(k, np.ndarray) or (isinstance(k, list) and k and not isinstance(k[0], slice)):
            a = np.asarray(k)
            counters.record("h2d", _nbytes(a))
            if a.dtype == np.bool_:
                counters.record("sync")
            out.append(a)
        else:
            out.append(k)
    return tuple(out) if isinstance(key, tuple) else out[0]


def _value(v, where):
    """Right-hand side of an assignment: host arrays are uploaded implicitly (counted h2d)."""
    if type(v) is StrictArray:
        return v._a
    if _has_host_array(v) or isinstance(v, list):
        a = np.asarray(v)
        counters.record("h2d", _nbytes(a))
        return a
    return v


# ============================================================================ the array
#: NumPy functions that only read metadata (shape, dtype) and so may take a device array.
_METADATA_FUNCTIONS = frozenset({np.shape, np.ndim, np.size, np.iscomplexobj, np.isrealobj, np.result_type,
                                 np.min_scalar_type, np.can_cast, np.shares_memory, np.may_share_memory})
_DENIED_ATTRS = frozenset({"tobytes", "tostring", "tofile", "dump", "dumps", "ctypes", "__array_interface__",
                           "__array_struct__", "data", "flat", "setflags", "__array_priority__", "__array_wrap__",
                           "__array_prepare__"})
_SYNC_METHODS = frozenset({"nonzero"})


class StrictArray:
    """A NumPy array that behaves like a CuPy device array (see the module docstring).

    Arithmetic, comparisons, indexing, views and methods return
    ``StrictArray``; conversions to host objects raise ``TypeError`` unless
    they are explicit (``.get()``, ``xp.asnumpy``) or scalar reads of a 0-d
    array (counted).
    """

    __slots__ = ("_a", "__weakref__")  # weak references work, as on cupy.ndarray
    __array_ufunc__ = None  # NumPy ufuncs refuse it; ndarray binary operators defer to its reflected methods
    __hash__ = None

    def __init__(self, a):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"StrictArray wraps a numpy.ndarray, got {type(a).__name__}")
        object.__setattr__(self, "_a", a)

    # --------------------------------------------------------------- refusals
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion of a device array to a NumPy array is not allowed (CuPy raises "
                        "TypeError here): use bk.to_numpy(a) / xp.asnumpy(a) / a.get() explicitly")

    def __array_function__(self, func, types_, args, kwargs):
        if func in _METADATA_FUNCTIONS:  # read shape/dtype only (CuPy dispatches them too): allowed
            return func(*_peek(args), **_peek(kwargs))
        name = getattr(func, "__module__", "numpy") + "." + getattr(func, "__name__", str(func))
        raise TypeError(f"{name}() called on a device array: NumPy functions do not run on the device; use "
                        f"bk.xp.{name.split('.', 1)[1]} (or transfer explicitly with bk.to_numpy)")

    def _scalar(self, conv, what):
        if self._a.ndim != 0:
            raise TypeError(f"{what}() of a device array of shape {self._a.shape}: only 0-d arrays convert to "
                            f"Python scalars (reduce on the device first, or transfer with bk.to_numpy)")
        counters.record("sync")
        return conv(self._a)

    def __float__(self):
        return self._scalar(float, "float")

    def __int__(self):
        return self._scalar(int, "int")

    def __complex__(self):
        return self._scalar(complex, "complex")

    def __bool__(self):
        return self._scalar(bool, "bool")

    def __format__(self, spec):
        if self._a.ndim == 0:
            counters.record("sync")
            return format(self._a[()], spec)
        if spec:
            raise TypeError(f"unsupported format string {spec!r} for a device array of shape {self._a.shape}")
        return str(self)

    def item(self, *args):
        if not args and self._a.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        counters.record("sync")
        return self._a.item(*args)

    # --------------------------------------------------------------- explicit transfers
    def get(self, stream=None, order="C", out=None, blocking=True):
        """Device -> host copy (``cupy.ndarray.get``), counted."""
        counters.record("d2h", _nbytes(self._a))
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        """Host -> device copy into this array (``cupy.ndarray.set``), counted."""
        arr = np.asarray(arr)
        if arr.shape != self._a.shape or arr.dtype != self._a.dtype:
            raise ValueError(f"set: shape/dtype mismatch {arr.shape}/{arr.dtype} vs {self._a.shape}/{self._a.dtype}")
        counters.record("h2d", _nbytes(arr))
        self._a[...] = arr

    def tolist(self):
        counters.record("d2h", _nbytes(self._a))
        return self._a.tolist()

    def __repr__(self):
        counters.record("d2h", _nbytes(self._a))
        return f"StrictArray({self._a!r})"

    def __str__(self):
        counters.record("d2h", _nbytes(self._a))
        return str(self._a)

    # --------------------------------------------------------------- properties
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StrictArray(self._a.T))
    mT = property(lambda self: StrictArray(np.swapaxes(self._a, -1, -2)))

    @property
    def real(self):
        return _wrap(self._a.real)

    @real.setter
    def real(self, v):
        self._a.real = _value(v, "real")

    @property
    def imag(self):
        return _wrap(self._a.imag)

    @imag.setter
    def imag(self, v):
        self._a.imag = _value(v, "imag")

    @property
    def _pypty_xp(self):
        """The array module of this array (:func:`pypty.optim.blocks.array_module`)."""
        return xp

    def __getattr__(self, name):
        if name in _DENIED_ATTRS or name.startswith("__"):
            raise AttributeError(f"device array has no attribute {name!r} (strict backend: host-only or "
                                 f"implicit-transfer API)")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)
        where = f"ndarray.{name}"

        def method(*args, **kwargs):
            if name in _SYNC_METHODS:
                counters.record("sync")
            return _wrap(attr(*_unwrap(args, where), **_unwrap(kwargs, where)))

        method.__name__ = name
        return method

    def __setattr__(self, name, value):
        if name in ("real", "imag"):
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"cannot set attribute {name!r} of a device array")

    # --------------------------------------------------------------- containers
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        for i in range(self._a.shape[0]):
            yield StrictArray(self._a[i, ...])

    def __contains__(self, v):
        counters.record("sync")
        return bool((self._a == _operand(v, "in")).any())

    def __getitem__(self, key):
        return _wrap(self._a[_index(key, "__getitem__")])

    def __setitem__(self, key, value):
        self._a[_index(key, "__setitem__")] = _value(value, "__setitem__")

    def __copy__(self):
        return StrictArray(self._a.copy())

    def __deepcopy__(self, memo):
        return StrictArray(self._a.copy())

    def __reduce__(self):
        counters.record("d2h", _nbytes(self._a))
        return (_rebuild, (self._a.copy(),))

    # --------------------------------------------------------------- unary operators
    def __neg__(self):
        return StrictArray(np.negative(self._a))

    def __pos__(self):
        return StrictArray(np.positive(self._a))

    def __abs__(self):
        return StrictArray(np.abs(self._a))

    def __invert__(self):
        return StrictArray(np.invert(self._a))


def _rebuild(a):
    return StrictArray(a)


def _operand(other, op):
    if type(other) is StrictArray:
        return other._a
    if isinstance(other, np.ndarray):
        raise TypeError(f"operator {op}: a device array and a NumPy array ({other.shape}, {other.dtype}) cannot be "
                        f"mixed (CuPy raises TypeError 'Unsupported type numpy.ndarray'); upload it with bk.asarray "
                        f"or transfer the device array with bk.to_numpy")
    if isinstance(other, _SCALARS):
        return other
    return NotImplemented


def _make_binop(name, fn, reflected=False, inplace=False):
    def op(self, other):
        o = _operand(other, name)
        if o is NotImplemented:
            return NotImplemented
        if inplace:
            fn(self._a, o, out=self._a)
            return self
        r = fn(o, self._a) if reflected else fn(self._a, o)
        return _wrap(r)

    op.__name__ = name
    return op


_BINOPS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
           "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
           "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor, "lshift": np.left_shift,
           "rshift": np.right_shift}
for _n, _f in _BINOPS.items():
    setattr(StrictArray, f"__{_n}__", _make_binop(f"__{_n}__", _f))
    setattr(StrictArray, f"__r{_n}__", _make_binop(f"__r{_n}__", _f, reflected=True))
    setattr(StrictArray, f"__i{_n}__", _make_binop(f"__i{_n}__", _f, inplace=True))
for _n, _f in {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
               "ge": np.greater_equal}.items():
    setattr(StrictArray, f"__{_n}__", _make_binop(f"__{_n}__", _f))
del _n, _f


# ============================================================================ the namespace
def _upload(obj, dtype=None, copy=None, **kwargs):
    """``cupy.asarray``/``cupy.array``: device arrays are converted on the device, host data is uploaded (h2d)."""
    if type(obj) is StrictArray:
        a = obj._a
        if dtype is not None:
            a = a.astype(dtype, copy=bool(copy))
        elif copy:
            a = a.copy()
        return StrictArray(a)
    if isinstance(obj, (list, tuple)) and any(type(o) is StrictArray for o in obj):
        # a sequence of device arrays is stacked on the device (as cupy.array does); host parts are uploaded
        parts = [o._a if type(o) is StrictArray else np.asarray(o) for o in obj]
        if any(type(o) is not StrictArray for o in obj):
            counters.record("h2d", sum(_nbytes(p) for o, p in zip(obj, parts) if type(o) is not StrictArray))
        return StrictArray(np.array(parts, dtype=dtype))
    kwargs.pop("blocking", None)  # cupy.asarray's own keyword
    host = np.array(obj, dtype=dtype, copy=True, **kwargs)
    counters.record("h2d", _nbytes(host))
    return StrictArray(host)


def _asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """``cupy.asnumpy``: device -> host copy (d2h), host input returned as NumPy."""
    if type(a) is StrictArray:
        counters.record("d2h", _nbytes(a._a))
        return np.array(a._a, order=order, copy=True)
    return np.asarray(a, order=order)


def _wrap_function(fn, where, sync=False, device_scalar=False):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if sync:
            counters.record("sync")
        r = fn(*_unwrap(args, where), **_unwrap(kwargs, where))
        if device_scalar and isinstance(r, (bool, int, float, complex)):
            r = np.asarray(r)
        return _wrap(r)

    return call


class _Ufunc:
    """A NumPy ufunc with device semantics (``cupy.ufunc``): call, ``at``, ``reduce``, ``outer``, ``accumulate``."""

    def __init__(self, uf, where):
        self._uf, self._where = uf, where
        self.__name__ = uf.__name__
        self.nin, self.nout, self.nargs = uf.nin, uf.nout, uf.nargs

    def __call__(self, *args, **kwargs):
        return _wrap(self._uf(*_unwrap(args, self._where), **_unwrap(kwargs, self._where)))

    def at(self, a, indices, b=None):
        if type(a) is not StrictArray:
            _refuse_host(a, self._where + ".at")
        idx = _index(indices, self._where + ".at")
        if b is None:
            self._uf.at(a._a, idx)
        else:
            self._uf.at(a._a, idx, _value(b, self._where + ".at"))

    def reduce(self, *args, **kwargs):
        return _wrap(self._uf.reduce(*_unwrap(args, self._where), **_unwrap(kwargs, self._where)))

    def accumulate(self, *args, **kwargs):
        return _wrap(self._uf.accumulate(*_unwrap(args, self._where), **_unwrap(kwargs, self._where)))

    def outer(self, *args, **kwargs):
        return _wrap(self._uf.outer(*_unwrap(args, self._where), **_unwrap(kwargs, self._where)))

    def __repr__(self):
        return f"<strict ufunc {self.__name__!r}>"


_SYNC_FUNCTIONS = frozenset({"nonzero", "unique", "argwhere", "flatnonzero", "extract", "compress"})
#: Python scalars in NumPy, 0-d device arrays in CuPy.
_DEVICE_SCALAR = frozenset({"allclose", "array_equal", "array_equiv", "count_nonzero"})


class _Namespace(types.SimpleNamespace):
    """Wraps a NumPy (sub)module: functions take and return device arrays, classes and constants pass through."""

    def __init__(self, module, prefix, **extra):
        super().__init__(**extra)
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_cache", {})

    def __getattr__(self, name):
        cache = self._cache
        if name in cache:
            return cache[name]
        if name.startswith("__") or (self._prefix == "cupy" and name in NUMPY_ONLY):
            raise AttributeError(f"module '{self._prefix}' has no attribute {name!r} (strict device backend: not "
                                 f"available in CuPy)")
        attr = getattr(self._module, name)
        where = f"{self._prefix}.{name}"
        if isinstance(attr, np.ufunc):
            out = _Ufunc(attr, where)
        elif isinstance(attr, type) or not callable(attr):
            out = attr  # dtypes, scalar types, constants (cupy.float32 is numpy.float32)
        elif name == "where":
            out = _where
        else:
            out = _wrap_function(attr, where, sync=name in _SYNC_FUNCTIONS, device_scalar=name in _DEVICE_SCALAR)
        cache[name] = out
        return out

    def __repr__(self):
        return f"<strict device namespace {self._prefix!r} (NumPy underneath)>"


def _where(condition, *xy):
    if not xy:
        counters.record("sync")
    return _wrap(np.where(*_unwrap((condition,) + xy, "cupy.where")))


_FFT_KWARGS = frozenset({"n", "s", "axis", "axes", "norm"})


def _fft_function(name):
    fn = getattr(scipy.fft, name)

    def call(a, *args, **kwargs):
        if type(a) is not StrictArray:
            _refuse_host(a, f"cupy.fft.{name}")
        bad = set(kwargs) - _FFT_KWARGS
        if bad:  # scipy.fft's workers / overwrite_x / plan do not exist in cupy.fft
            raise TypeError(f"cupy.fft.{name}() got unexpected keyword argument(s) {sorted(bad)}")
        return StrictArray(np.asarray(fn(a._a, *_unwrap(args, name), **_unwrap(kwargs, name))))

    call.__name__ = name
    return call


def _freq_function(name):
    fn = getattr(np.fft, name)

    def call(*args, **kwargs):
        return StrictArray(np.asarray(fn(*args, **kwargs)))

    call.__name__ = name
    return call


def _shift_function(name):
    fn = getattr(np.fft, name)

    def call(x, axes=None):
        if type(x) is not StrictArray:
            _refuse_host(x, f"cupy.fft.{name}")
        return StrictArray(fn(x._a, axes=axes))

    call.__name__ = name
    return call


_fft = types.SimpleNamespace(
    **{n: _fft_function(n) for n in ("fft", "ifft", "fft2", "ifft2", "fftn", "ifftn", "rfft", "irfft", "rfft2",
                                     "irfft2", "rfftn", "irfftn", "hfft", "ihfft")},
    fftfreq=_freq_function("fftfreq"), rfftfreq=_freq_function("rfftfreq"),
    fftshift=_shift_function("fftshift"), ifftshift=_shift_function("ifftshift"))


class _MemoryPool:
    """Stand-in for ``cupy.get_default_memory_pool()`` (NumPy manages host memory itself)."""

    def free_all_blocks(self):
        return None

    def used_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def total_bytes(self):
        return 0


_POOL = _MemoryPool()

#: Simulated free memory of the strict "device" (bytes), for ``compute_batch="auto"``.
DEVICE_BYTES = 4 * 2**30


class _Device:
    """Stand-in for ``cupy.cuda.Device()``."""

    def __init__(self, device=0):
        self.id = int(device)

    @property
    def mem_info(self):
        return DEVICE_BYTES, DEVICE_BYTES

    def synchronize(self):
        counters.record("sync")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Stream:
    def synchronize(self):
        counters.record("sync")


_cuda = types.SimpleNamespace(Device=_Device, Stream=types.SimpleNamespace(null=_Stream()),
                              runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))

#: The ``cupy`` stand-in: ``xp.zeros``, ``xp.exp``, ``xp.fft.fft2``, ``xp.linalg.norm``, ``xp.asnumpy``, ...
xp = _Namespace(
    np, "cupy",
    ndarray=StrictArray, asarray=_upload, array=_upload, asanyarray=_upload, asnumpy=_asnumpy, fft=_fft,
    linalg=_Namespace(np.linalg, "cupy.linalg"), random=_Namespace(np.random, "cupy.random"),
    get_default_memory_pool=lambda: _POOL, get_default_pinned_memory_pool=lambda: _POOL, cuda=_cuda,
    counters=counters, __name__="pypty.strict_device.xp",
)
object.__setattr__(xp, "get_array_module", lambda *args: xp)
