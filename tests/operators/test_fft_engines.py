"""CPU FFT engines (pypty/fft.py): every installed engine computes scipy.fft's unitary transforms."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.fft as sf

from pypty import fft
from pypty.backend import get_backend

ENGINES = list(fft.available_engines())
RNG = np.random.default_rng(3)


def crand(shape, dtype):
    return (RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("unscaled", [False, True])
def test_engine_matches_scipy(name, dtype, unscaled):
    tr = fft.make_transforms(name, threads=2)
    a = crand((3, 2, 16, 24), dtype)
    a0 = a.copy()
    f, i = tr.fft2(a, unscaled=unscaled), tr.ifft2(a, unscaled=unscaled)
    rf = sf.fft2(a, norm="backward" if unscaled else "ortho")
    ri = sf.ifft2(a, norm="forward" if unscaled else "ortho")
    tol = 1e-5 if dtype == np.complex64 else 1e-12
    assert f.dtype == dtype and i.dtype == dtype and f.shape == a.shape
    np.testing.assert_allclose(f, rf, atol=tol * np.abs(rf).max())
    np.testing.assert_allclose(i, ri, atol=tol * np.abs(ri).max())
    assert np.array_equal(a, a0), "the input was modified"


@pytest.mark.parametrize("name", ENGINES)
def test_engine_odd_inputs(name):
    tr = fft.make_transforms(name, threads=1)
    a = crand((4, 2, 20, 18), np.complex128)
    view = a[:, :, ::2, ::-1]  # not contiguous
    np.testing.assert_allclose(tr.fft2(view), sf.fft2(view, norm="ortho"), atol=1e-12)
    b = a[:, :1]  # a size-1 axis with an arbitrary stride
    np.testing.assert_allclose(tr.ifft2(b), sf.ifft2(b, norm="ortho"), atol=1e-12)
    r = RNG.standard_normal((2, 8, 8))  # real input: complex result
    np.testing.assert_allclose(tr.fft2(r), sf.fft2(r, norm="ortho"), atol=1e-12)


@pytest.mark.parametrize("name", ENGINES)
def test_engine_from_several_threads_at_once(name):
    tr = fft.make_transforms(name, threads=1)
    arrays = [crand((8, 32, 32), np.complex64) for _ in range(8)]
    ref = [tr.fft2(a) for a in arrays]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda a: tr.fft2(a), arrays * 3))
    for k, g in enumerate(got):
        assert np.array_equal(g, ref[k % 8])


def test_choice_by_name_and_environment(monkeypatch):
    with pytest.raises(ValueError, match="unknown FFT engine 'fast'"):
        fft.make_transforms("fast")
    monkeypatch.setenv(fft.FFT_ENV, "scipy")
    assert fft.make_transforms().name == "scipy"
    assert get_backend("numpy").fft_name == "scipy"
    monkeypatch.setenv(fft.FFT_ENV, "auto")
    assert fft.make_transforms().name == next(n for n in fft.AUTO_ORDER if n in ENGINES)


@pytest.mark.skipif("fftw" not in ENGINES, reason="pyFFTW is not installed")
def test_fftw_wisdom_file_shared_between_processes(tmp_path):
    """A plan made in one process goes into the wisdom file; a second process plans the same way (same bits)."""
    code = ("import numpy as np, sys; from pypty.fft import FFTWTransforms; "
            "a = np.random.default_rng(0).standard_normal((6, 48, 40)).astype(np.complex64); "
            "np.save(sys.argv[1], FFTWTransforms(1).fft2(a))")
    env = dict(os.environ, PYPTY_CACHE_DIR=str(tmp_path / "cache"))
    for out in ("a.npy", "b.npy"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / out)], env=env, check=True, timeout=120)
    files = os.listdir(tmp_path / "cache")
    assert [f for f in files if f.startswith("fftw_wisdom-")], files
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


@pytest.mark.skipif("fftw" not in ENGINES, reason="pyFFTW is not installed")
def test_fftw_unusable_wisdom_file_warns_once(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(fft.CACHE_ENV, str(cache))
    tr = fft.FFTWTransforms(1)
    with open(tr._wisdom.path, "wb") as f:
        f.write(b"not a pickle")
    with pytest.warns(RuntimeWarning, match="FFTW wisdom file"):
        tr.fft2(crand((2, 12, 12), np.complex64))
    monkeypatch.setenv(fft.CACHE_ENV, "off")
    assert fft.cache_dir() is None


@pytest.mark.parametrize("name", ENGINES)
def test_clear_plans_drops_kept_plans_and_keeps_the_bits(name):
    """``remove_fft_cache``: FFTW drops its kept plans (ducc0 and scipy.fft keep none pypty can drop); a transform
    after the drop re-plans and gives the same bits."""
    tr = fft.make_transforms(name, threads=1)
    a = crand((3, 16, 20), np.complex64)
    before = tr.fft2(a), tr.ifft2(a)
    dropped = tr.clear_plans()
    if name == "fftw":
        assert dropped >= 2 and tr.clear_plans() == 0  # the forward and backward plans; nothing kept afterwards
    else:
        assert dropped == 0
    after = tr.fft2(a), tr.ifft2(a)
    assert all(np.array_equal(x, y) for x, y in zip(before, after))


@pytest.mark.skipif("fftw" not in ENGINES, reason="pyFFTW is not installed")
def test_backend_clear_fft_plans_reaches_the_engine():
    bk = get_backend("numpy", fft="fftw")
    bk.fft2(crand((2, 8, 8), np.complex128))
    assert bk.clear_fft_plans() >= 1 and bk.clear_fft_plans() == 0
