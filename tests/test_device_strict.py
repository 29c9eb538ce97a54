"""The device-strict backend (``PYPTY_DEVICE=strict``, :mod:`pypty.strict_device`) and the backend choice.

(a) the stand-in refuses what CuPy refuses and counts explicit transfers and syncs;
(b) one loss-and-gradient evaluation does a bounded number of host<->device transfers and syncs that does
    not grow with the number of batches (data on the device);
(c) the device-capable part of the suite passes on the strict backend (a subprocess with
    ``PYPTY_DEVICE=strict``, so that the single test command ``python -m pytest -q`` runs the strict pass);
(d) a deliberately wrong implicit conversion in the model is caught;
(e) ``get_backend``: the environment variable, the CuPy probe with its fallback notice, ``PYPTY_FORCE_CPU``.
"""
import os
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import scipy.fft

import pypty.backend as backend
from conftest import STRICT
from pypty.backend import get_backend
from pypty.model.setup import build_setup
from pypty.optim.blocks import array_module, norm, vdot
from pypty.parameters import validate
from pypty.strict_device import StrictArray
from synthetic import base_params, dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def sbk():
    bk = get_backend("strict")
    bk.counters.reset()
    yield bk
    bk.counters.reset()


# ============================================================================ (a) the stand-in
def test_arrays_are_device_arrays(sbk):
    h = np.arange(6.0).reshape(2, 3)
    a = sbk.asarray(h)
    assert isinstance(a, StrictArray) and sbk.is_gpu and sbk.name == "strict"
    b = (a * 2 + 1.0) @ a.T  # arithmetic, views, matmul stay on the device
    assert isinstance(b, StrictArray) and b.shape == (2, 2) and b.dtype == np.float64
    for v in (a.real, a.conj(), a.astype(np.complex64), a.reshape(3, 2), a[0], a[:, 1:], a.sum(axis=0),
              sbk.xp.sum(a), sbk.xp.exp(a), sbk.fft2(a.astype(np.complex128)), a > 2, np.float64(2.0) * a):
        assert isinstance(v, StrictArray)
    assert sbk.xp.sum(a).ndim == 0  # reductions give 0-d device arrays, as on CuPy
    assert array_module(a) is sbk.xp and vdot({"a": a}, {"a": a}) == 55.0 and norm({"a": a}) == np.sqrt(55.0)
    np.testing.assert_array_equal(sbk.to_numpy(b), (h * 2 + 1.0) @ h.T)


@pytest.mark.parametrize("call", [
    pytest.param(lambda a: np.asarray(a), id="np.asarray"),
    pytest.param(lambda a: np.array(a), id="np.array"),
    pytest.param(lambda a: a.__array__(), id="__array__"),
    pytest.param(lambda a: np.exp(a), id="numpy ufunc"),
    pytest.param(lambda a: np.sum(a), id="numpy function"),
    pytest.param(lambda a: np.fft.fft2(a), id="numpy.fft"),
    pytest.param(lambda a: scipy.fft.fft2(a), id="scipy.fft"),
    pytest.param(lambda a: float(a), id="float of a non-scalar"),
    pytest.param(lambda a: bool(a > 0), id="bool of a non-scalar"),
    pytest.param(lambda a: a + np.ones(3), id="device + host"),
    pytest.param(lambda a: np.ones(3) * a, id="host * device"),
    pytest.param(lambda a: a + np.asarray(1.0), id="device + 0-d host array"),
    pytest.param(lambda a: get_backend("strict").xp.exp(np.ones(3)), id="xp function on a host array"),
    pytest.param(lambda a: get_backend("strict").fft2(np.ones((2, 2), complex)), id="bk.fft2 on a host array"),
    pytest.param(lambda a: get_backend("strict").xp.maximum(a, np.zeros(3)), id="host array mixed into xp"),
])
def test_each_refusal_raises_type_error(sbk, call):
    a = sbk.asarray(np.array([1.0, -2.0, 3.0]))
    with pytest.raises(TypeError):
        call(a)


def test_numpy_only_functions_and_host_only_methods_are_missing(sbk):
    a = sbk.asarray(np.ones(3))
    with pytest.raises(AttributeError):
        sbk.xp.errstate  # noqa: B018 - not in CuPy
    with pytest.raises(AttributeError):
        a.tobytes()
    with pytest.raises(TypeError):
        sbk.xp.fft.fft(a.astype(complex), workers=2)  # scipy.fft keywords do not exist in cupy.fft


def test_scalars_and_metadata_are_allowed(sbk):
    a = sbk.asarray(np.array([1.0, 2.0]))
    assert float(sbk.xp.sum(a)) == 3.0 and int(a[1]) == 2 and bool(a[0] > 0) and a[1].item() == 2.0
    assert np.iscomplexobj(a) is False and np.shape(a) == (2,) and len(a) == 2
    assert f"{sbk.xp.max(a):.1f}" == "2.0"


def test_explicit_transfers_and_syncs_are_counted_per_call_site(sbk):
    c = sbk.counters
    host = np.arange(12.0).reshape(3, 4)
    a = sbk.asarray(host)
    assert c.totals() == {"h2d": 1, "d2h": 0, "sync": 0} and c.bytes()["h2d"] == host.nbytes
    back = sbk.to_numpy(a * 2)
    assert isinstance(back, np.ndarray) and np.array_equal(back, host * 2)
    assert c.totals() == {"h2d": 1, "d2h": 1, "sync": 0}
    float(sbk.xp.sum(a))  # a scalar read
    a[np.array([0, 2])]  # a host index array is uploaded implicitly (CuPy does the same)
    a[a > 3]  # a boolean mask: the output size is read back
    assert c.totals() == {"h2d": 2, "d2h": 1, "sync": 2}
    sites = c.by_site("h2d")
    assert all(os.path.basename(__file__) in site for site in sites), sites  # the caller, not the backend
    c.reset()
    assert c.totals() == {"h2d": 0, "d2h": 0, "sync": 0}


def test_uploads_copy_like_a_device_would(sbk):
    host = np.ones(3)
    a = sbk.asarray(host)
    host[0] = 5.0  # the device copy does not see later host writes
    assert sbk.to_numpy(a)[0] == 1.0
    assert sbk.to_numpy(host) is host  # a host array passes through to_numpy untouched


# ============================================================================ (b) transfers and syncs per evaluation
#: Files allowed per-batch transfers or syncs: none (the object-gradient scatter adds window by window, without
#: reading sizes back, and the window corners are clipped with Python bounds).
PER_BATCH_ELSEWHERE = ()


@pytest.fixture(scope="module")
def strict_setup():
    obj, probe, pos, data = dataset(4, 3.0, 44, seed=1)
    bk = get_backend("strict")
    p = validate(base_params(data, pos, probe, compute_batch=16))
    st = build_setup(p, bk)
    yield st, data
    st.close()


def _on_device_data(st, data):
    """``get_data`` with the whole dataset on the device and each batch's index array copied there once."""
    bk = st.bk
    dev = bk.asarray(np.fft.ifftshift(data, axes=(1, 2)).astype(st.real_dtype))
    cache = {}

    def get(idx):
        key = np.asarray(idx).tobytes()
        if key not in cache:
            cache[key] = bk.asarray(np.asarray(idx))
        return dev[cache[key]]

    return get


def _counts(st, get, n_batches, need=("obj", "probe", "positions")):
    bk = st.bk
    batches = np.array_split(np.arange(st.n_patterns), n_batches)
    st.model.loss_and_grad(st.arrays, batches, get, need=need)  # warm-up: device copies of the index arrays
    bk.counters.reset()
    loss, grads = st.model.loss_and_grad(st.arrays, batches, get, need=need)
    assert all(isinstance(g, StrictArray) for g in grads.values())
    return loss, bk.counters.by_site()


def _split(sites):
    ours = {k: v for k, v in sites.items() if not (PER_BATCH_ELSEWHERE and k[1].startswith(PER_BATCH_ELSEWHERE))}
    return ours, {k: v for k, v in sites.items() if k not in ours}


def test_one_evaluation_has_a_bounded_number_of_transfers_and_syncs(strict_setup):
    st, data = strict_setup
    get = _on_device_data(st, data)
    runs = {nb: _counts(st, get, nb) for nb in (1, 2, 4)}
    ours = {nb: _split(sites)[0] for nb, (_, sites) in runs.items()}
    # identical counts, site by site, for 1, 2 and 4 batches (the model, the loss, the operators but the scatter)
    assert ours[1] == ours[2] == ours[4], ours
    totals = {k: sum(n for (kind, _), n in ours[1].items() if kind == k) for k in ("h2d", "d2h", "sync")}
    # one upload of all batch indices, no download, one sync: the loss read back as a Python float
    assert totals == {"h2d": 1, "d2h": 0, "sync": 1}, ours[1]
    # the rest (pypty/operators/patches.py) is bounded per batch: at most linear in the number of batches
    other = {nb: sum(_split(sites)[1].values()) for nb, (_, sites) in runs.items()}
    assert other[2] <= 2 * other[1] and other[4] <= 4 * other[1], other
    losses = [loss for loss, _ in runs.values()]
    assert np.allclose(losses, losses[0], rtol=1e-12)


def test_no_per_batch_transfers_or_syncs_anywhere(strict_setup):
    st, data = strict_setup
    get = _on_device_data(st, data)
    totals = {nb: sum(_counts(st, get, nb)[1].values()) for nb in (1, 4)}
    assert totals[1] == totals[4], totals


def test_streamed_data_costs_one_upload_per_batch_and_nothing_else(strict_setup):
    """Data not on the device: the only extra transfer per batch is the batch's upload."""
    st, data = strict_setup
    dev_get = _on_device_data(st, data)
    host = np.fft.ifftshift(data, axes=(1, 2)).astype(st.real_dtype)

    def streamed(idx):
        return st.bk.asarray(host[np.asarray(idx)])

    for nb in (1, 4):
        on_device = _split(_counts(st, dev_get, nb)[1])[0]
        stream = _split(_counts(st, streamed, nb)[1])[0]
        extra = {k: stream.get(k, 0) - on_device.get(k, 0) for k in set(stream) | set(on_device)}
        extra = {k: v for k, v in extra.items() if v}
        assert list(extra.values()) == [nb] and next(iter(extra))[0] == "h2d", extra


# ============================================================================ (c) the strict pass of the suite
#: The device-capable part of the suite, run on the strict backend (about 20-40 s on 2 cores).
STRICT_PASS = ("tests/operators", "tests/model", "tests/regularizers", "tests/constraints", "tests/optim",
               "tests/engine", "tests/output")


@pytest.mark.skipif(STRICT, reason="already the strict pass (no recursion)")
def test_device_capable_suite_passes_on_the_strict_backend():
    env = dict(os.environ, PYPTY_DEVICE="strict")
    env.pop("PYPTY_FORCE_CPU", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *STRICT_PASS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-6000:] + proc.stderr[-3000:])


# ============================================================================ (d) a seeded bug is caught
def test_a_wrong_implicit_conversion_in_the_model_is_caught(monkeypatch, strict_setup):
    """A far-field operator that sums on the host (np.sum of a device array) passes on NumPy, fails strict."""
    import pypty.model.multislice as ms
    import pypty.operators as ops

    st, data = strict_setup
    get = _on_device_data(st, data)
    real = ops.farfield

    def host_farfield(bk, exit_wave):
        psi_hat = bk.fft2(exit_wave)
        return np.sum(np.abs(psi_hat) ** 2, axis=(1, 2)), psi_hat  # the seeded bug: NumPy on a device array

    monkeypatch.setattr(ms.ops, "farfield", host_farfield)
    with pytest.raises(TypeError, match="ufunc|device array"):
        st.model.loss_and_grad(st.arrays, [np.arange(4)], get, need=("obj",))
    # the same code runs on NumPy: the plain suite would not notice
    npbk = get_backend("numpy")
    psi = np.ones((1, 1, 1, 4, 4), complex)
    np.testing.assert_allclose(host_farfield(npbk, psi)[0], real(npbk, psi)[0])


# ============================================================================ (e) get_backend
@pytest.fixture
def fresh_probe(monkeypatch):
    """Clear the cached CuPy probe before and after (the environment changes in the test)."""
    monkeypatch.delenv("PYPTY_DEVICE", raising=False)
    monkeypatch.delenv("PYPTY_FORCE_CPU", raising=False)
    backend.cupy_status.cache_clear()
    backend._notice_cpu_fallback.cache_clear()
    yield monkeypatch
    backend.cupy_status.cache_clear()
    backend._notice_cpu_fallback.cache_clear()


def test_environment_variable_selects_the_default_backend(fresh_probe):
    fresh_probe.setenv("PYPTY_DEVICE", "strict")
    assert get_backend().name == "strict"
    assert get_backend("numpy").name == "numpy"  # an explicit name is honoured
    fresh_probe.setenv("PYPTY_DEVICE", "cpu")
    assert get_backend().name == "numpy"
    fresh_probe.setenv("PYPTY_DEVICE", "tpu")
    with pytest.raises(ValueError, match="PYPTY_DEVICE"):
        get_backend()
    with pytest.raises(ValueError, match="strict"):
        get_backend("fortran")


def test_force_cpu_keeps_working(fresh_probe):
    fresh_probe.setenv("PYPTY_FORCE_CPU", "1")
    assert backend.cupy_status() == (False, "PYPTY_FORCE_CPU is set") and not backend.cupy_available()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # forced: no notice
        assert get_backend().name == "numpy"
    with pytest.raises(RuntimeError, match="PYPTY_FORCE_CPU"):
        get_backend("cupy")


def _fake_cupy(kernel_error=None):
    def arange(*args, **kwargs):
        raise kernel_error

    cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    return types.SimpleNamespace(cuda=cuda, arange=arange, float32=np.float32, complex64=np.complex64)


def test_cupy_that_cannot_run_a_kernel_falls_back_with_one_notice(fresh_probe):
    fresh_probe.setitem(sys.modules, "cupy", _fake_cupy(RuntimeError("CUDA_ERROR_NO_BINARY_FOR_GPU: no kernel image")))
    with pytest.warns(RuntimeWarning, match="running on the CPU.*no kernel image") as rec:
        assert get_backend().name == "numpy"
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        assert get_backend().name == "numpy"
    with pytest.raises(RuntimeError, match="test kernel and FFT"):
        get_backend("cupy")


def test_cupy_not_installed_is_silent(fresh_probe):
    fresh_probe.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_backend().name == "numpy"
    ok, why = backend.cupy_status()
    assert not ok and why.startswith("CuPy is not installed")
