"""Initial probes (pypty.initialize.probe) and compute_batch="auto" (pypty.data.memory)."""
import tracemalloc

import numpy as np
import pytest

import pypty.iterative
import pypty.data.memory
from pypty import initialize as ini
from pypty.backend import get_backend
from pypty.model import MultisliceModel
from pypty.parameters import PyptyParameterError, validate
from pypty.model.setup import build_setup
from pypty.probe import aberration_phase

from synthetic import KV, PIX, WIN, base_params, dataset


@pytest.fixture(scope="module")
def small():
    obj, probe, pos, data = dataset(4, 3.0, 48, seed=2)
    return pos, data


def probe_from_mean_pattern(mean_pattern, pix, kv, aberrations):
    """Independent reference: sqrt(mean pattern) with the aberration phase exp(-i chi), unitary inverse FFT."""
    amp = np.sqrt(np.clip(np.fft.ifftshift(mean_pattern), 0, None))
    chi = aberration_phase(amp.shape, pix, kv, aberrations)
    return np.fft.fftshift(np.fft.ifft2(amp * np.exp(-1j * chi), norm="ortho"))[..., None]


def _p(**kw):
    return validate(dict(dict(acc_voltage=KV), **kw))


def test_default_probe_is_the_mean_pattern_probe(small):
    _, data = small
    mp = data.mean(axis=0)
    ab = np.array([-40.0, 3.0])
    probe, how = ini.probe_from_parameters(_p(aberrations=ab), mp, (WIN, WIN), (PIX, PIX))
    ref = probe_from_mean_pattern(mp, (PIX, PIX), KV, ab)
    np.testing.assert_allclose(probe, ref, atol=1e-10 * np.abs(ref).max())
    assert "mean pattern" in how and "aberrations" in how
    np.testing.assert_allclose(np.sum(np.abs(probe) ** 2), mp.sum())


def test_binary_aperture_and_beam_ctf(small):
    _, data = small
    mp = data.mean(axis=0)
    ap = ini.aperture_from_binary(mp, 0.5)
    assert set(np.unique(ap)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ap, mp > 0.5 * mp.mean())
    probe, how = ini.probe_from_parameters(_p(estimate_aperture_based_on_binary=0.5), mp, (WIN, WIN), (PIX, PIX))
    k = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe[..., 0]), norm="ortho")))
    assert "binary aperture" in how
    assert np.ptp(k[ap > 0]) < 1e-9 * k.max() and k[ap == 0].max() < 1e-9 * k.max()  # flat inside, zero out
    ctf = np.zeros((WIN, WIN), complex)
    ctf[WIN // 2 - 3:WIN // 2 + 4, WIN // 2 - 3:WIN // 2 + 4] = 1j
    probe2, how2 = ini.probe_from_parameters(_p(beam_ctf=ctf), mp, (WIN, WIN), (PIX, PIX))
    k2 = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe2[..., 0]), norm="ortho"))
    np.testing.assert_allclose(k2 / k2[WIN // 2, WIN // 2], ctf / ctf[WIN // 2, WIN // 2], atol=1e-9)
    with pytest.raises(PyptyParameterError, match="'beam_ctf'.*shape"):
        ini.probe_from_parameters(_p(beam_ctf=np.ones((8, 8))), mp, (WIN, WIN), (PIX, PIX))
    with pytest.raises(PyptyParameterError, match="estimate_aperture_based_on_binary"):
        ini.aperture_from_binary(mp, 1e9)


def test_hermite_modes_orthogonal_with_set_powers(small):
    _, data = small
    mp = data.mean(axis=0)
    probe, how = ini.probe_from_parameters(_p(n_hermite_probe_modes=(2, 3)), mp, (WIN, WIN), (PIX, PIX))
    assert probe.shape == (WIN, WIN, 6) and "6 Hermite modes" in how
    m = probe.reshape(-1, 6)
    gram = m.conj().T @ m
    off = gram - np.diag(np.diag(gram))
    assert np.abs(off).max() < 1e-9 * np.abs(gram).max()
    powers = np.real(np.diag(gram))
    np.testing.assert_allclose(powers[1:] / powers[0], 0.1, rtol=1e-9)
    np.testing.assert_allclose(powers.sum(), mp.sum())
    single = ini.hermite_modes(probe[..., 0], (1, 1))
    np.testing.assert_array_equal(single[..., 0], probe[..., 0])
    with pytest.raises(PyptyParameterError, match="n_hermite_probe_modes"):
        validate({"n_hermite_probe_modes": (0, 2)})


def test_defocus_spread_modes_average_the_intensity(small):
    _, data = small
    mp = data.mean(axis=0)
    dfs = np.array([-20.0, 0.0, 20.0])
    probe, how = ini.probe_from_parameters(_p(defocus_spread_modes=dfs, aberrations=np.array([-50.0])), mp,
                                           (WIN, WIN), (PIX, PIX))
    assert probe.shape[-1] == 3 and "defocus-spread" in how
    powers = np.sum(np.abs(probe) ** 2, axis=(0, 1))
    np.testing.assert_allclose(powers, mp.sum() / 3)
    # mode i is the single probe with defocus 50 + df_i (C10 = -50 - df_i)
    for i, df in enumerate(dfs):
        ref = ini.probe_from_beam(np.sqrt(mp), (PIX, PIX), KV, {"C10": -50.0 - df})
        ref *= np.sqrt(mp.sum() / 3 / np.sum(np.abs(ref) ** 2))
        np.testing.assert_allclose(probe[..., i], ref, atol=1e-9 * np.abs(ref).max())
    with pytest.raises(PyptyParameterError, match="not both"):
        ini.probe_from_parameters(_p(defocus_spread_modes=dfs, n_hermite_probe_modes=(2, 1)), mp,
                                  (WIN, WIN), (PIX, PIX))


@pytest.mark.parametrize("kw, modes", [
    (dict(n_hermite_probe_modes=(2, 1)), 2),
    (dict(defocus_spread_modes=np.array([-10.0, 10.0])), 2),
    (dict(estimate_aperture_based_on_binary=0.3), 1),
])
def test_run_builds_the_probe_from_beam_parameters(small, kw, modes):
    pos, data = small
    p = base_params(data, pos, None, epoch_max=2, aberrations=np.array([-60.0]), **kw)
    expected = ini.initial_probe(p)
    assert expected.shape == (WIN, WIN, modes)
    res = pypty.iterative.run(dict(p, epoch_max=0))
    np.testing.assert_allclose(res["probe"], expected, atol=1e-9 * np.abs(expected).max())
    res = pypty.iterative.run(p)
    assert res["probe"].shape == (WIN, WIN, modes) and np.isfinite(res["loss"]).all()


# ------------------------------------------------------------------ compute_batch auto

def test_auto_batch_never_below_one_and_clipped():
    assert pypty.data.memory.auto_compute_batch(0, 1e6, 0, 0.7, 100) == 1
    assert pypty.data.memory.auto_compute_batch(-5, 1e6, 0, 0.7, 100) == 1
    assert pypty.data.memory.auto_compute_batch(1e9, 1e6, 2e9, 0.7, 100) == 1      # fixed part does not fit
    assert pypty.data.memory.auto_compute_batch(1e15, 1e6, 0, 0.7, 100) == 100    # all patterns
    b = pypty.data.memory.auto_compute_batch(1e9, 1e6, 1e8, 0.5, 10**6)
    assert b == int((0.5 * 1e9 / pypty.data.memory.SAFETY - 1e8) // 1e6)
    with pytest.raises(ValueError, match="memory_saturation"):
        pypty.data.memory.auto_compute_batch(1e9, 1e6, 0, 0.0, 10)


def test_auto_batch_with_mocked_free_memory(small, monkeypatch):
    pos, data = small
    per = pypty.data.memory.bytes_per_pattern((WIN, WIN), 1, 1, 1)
    p = validate(base_params(data, pos, None, compute_batch="auto", memory_saturation=0.5))
    fixed = pypty.data.memory.fixed_bytes(ini.object_shape_px(pos, (WIN, WIN)), (WIN, WIN), 1, 1, 1, len(data))
    free = int((fixed + 5.5 * per) * pypty.data.memory.SAFETY / 0.5)
    monkeypatch.setattr(pypty.data.memory, "free_memory_bytes", lambda bk: free)
    lines = []
    st = build_setup(p, get_backend("numpy"), log=lines.append)
    st.close()
    assert st.compute_batch == 5 and any("compute_batch auto: 5" in s for s in lines)
    monkeypatch.setattr(pypty.data.memory, "free_memory_bytes", lambda bk: 1000)
    st = build_setup(p, get_backend("numpy"))
    st.close()
    assert st.compute_batch == 1
    assert validate({})["compute_batch"] == "auto"


def test_auto_batch_is_capped_on_the_cpu(small, monkeypatch):
    pos, data = small
    p = validate(base_params(data, pos, None, compute_batch="auto"))
    per = pypty.data.memory.bytes_per_pattern((WIN, WIN), 1, 1, 1)
    monkeypatch.setattr(pypty.data.memory, "CPU_MAX_BATCH_BYTES", int(3.5 * per))
    monkeypatch.setattr(pypty.data.memory, "free_memory_bytes", lambda bk: 10**12)
    st = build_setup(p, get_backend("numpy"))
    st.close()
    assert st.compute_batch == 3


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("s, mo, mp", [(1, 1, 1), (2, 1, 2), (2, 2, 2), (1, 1, 3)])
def test_memory_estimate_matches_measured_working_set(s, mo, mp, fused, monkeypatch):
    """tracemalloc peak of one loss-and-gradient evaluation vs the per-pattern estimate.

    The estimate describes the NumPy expressions (the GPU path); the fused CPU kernels need less, so
    for them it is only checked to stay an upper bound."""
    from pypty.operators.cpu_kernels import KERNELS_ENV, available

    monkeypatch.setenv(KERNELS_ENV, "1" if fused else "0")
    if fused and not available():
        pytest.skip("Numba is not installed")
    bk = get_backend("numpy")
    model = MultisliceModel(bk, (WIN, WIN), (PIX, PIX), 0.025, (2.0,) * s, np.complex128)
    rng = np.random.default_rng(0)
    obj = np.exp(1j * rng.random((s, mo, 64, 64)))
    probe = rng.random((1, mp, WIN, WIN)) + 0j
    peaks = []
    for b in (4, 12):
        pos = rng.random((b, 2)) * 30
        d = rng.random((b, WIN, WIN))
        model.loss_and_grad({"obj": obj, "probe": probe, "positions": pos}, [np.arange(b)], lambda i: d[i],
                            need=("obj", "probe", "positions"))  # FFT plans and compiled kernels made here
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        model.loss_and_grad({"obj": obj, "probe": probe, "positions": pos}, [np.arange(b)], lambda i: d[i],
                            need=("obj", "probe", "positions"))
        peaks.append(tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.stop()
    measured = (peaks[1] - peaks[0]) / 8
    est = pypty.data.memory.bytes_per_pattern((WIN, WIN), s, mo, mp)
    assert 1.0 < est / measured < (1e9 if fused else 1.4)  # an upper bound, and not a wasteful one
