"""Small synthetic far-field datasets with a known answer (for recovery tests)."""
import numpy as np

from pypty.backend import get_backend
from pypty.model import MultisliceModel
from pypty.operators.optics import electron_wavelength_A
from pypty.probe import make_probe

WIN = 32
PIX = 0.4
KV = 200.0


def phase_object(shape, n_slices=1, seed=0, strength=0.4):
    """A smooth random 'atomic' phase object (y, x, slices, 1), complex128."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx]
    out = np.ones((ny, nx, n_slices, 1), complex)
    for s in range(n_slices):
        ph = np.zeros(shape)
        for _ in range(int(ny * nx / 40)):
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
            ph += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.2**2))
        out[..., s, 0] = np.exp(1j * strength * ph / ph.max())
    return out


def raster(n_scan, step, margin=2.0):
    iy, ix = np.mgrid[:n_scan, :n_scan]
    return np.stack([iy.ravel() * step + margin, ix.ravel() * step + margin], axis=1).astype(float)


def simulate(obj, probe, positions, slice_distance=2.0, counts=None, seed=1, extra=None, **model_kw):
    """Intensities (N, Y, X), zero frequency at the centre, from pypty's own model.

    ``extra`` holds further internal arrays (tilts, beam_current, ...);
    ``model_kw`` goes to :class:`pypty.model.MultisliceModel`.
    """
    bk = get_backend("numpy")
    win = probe.shape[:2]
    n_slices = obj.shape[2]
    model = MultisliceModel(bk, win, (PIX, PIX), electron_wavelength_A(KV),
                            (slice_distance,) * n_slices, np.complex128, acc_voltage_kV=KV, **model_kw)
    probe_int = np.transpose(probe, (2, 0, 1)) if probe.ndim == 3 else np.transpose(probe, (3, 2, 0, 1))
    arrays = {"obj": np.ascontiguousarray(np.transpose(obj, (2, 3, 0, 1))),
              "probe": np.ascontiguousarray(probe_int.reshape((-1,) + probe_int.shape[-3:])),
              "positions": np.asarray(positions, float)}
    arrays.update(extra or {})
    inten = model.predict(arrays, np.arange(len(positions)))
    if inten.ndim == 3:
        inten = np.fft.fftshift(inten, axes=(1, 2))
    if counts is not None:
        inten = np.random.default_rng(seed).poisson(inten).astype(float)
    return inten


def default_probe(defocus=60.0, intensity=1e4, n_modes=1):
    return make_probe((WIN, WIN), PIX, KV, 25.0, {"C10": -defocus}, n_modes=n_modes, intensity=intensity)


def base_params(data, positions, probe, **kw):
    p = dict(dataset=data, positions=positions, probe=probe, acc_voltage=KV, pixel_size_x_A=PIX,
             pixel_size_y_A=PIX, epoch_max=10, print_flag=0, compute_batch=16, output_folder="")
    p.update(kw)
    return p


def dataset(n_scan, step, canvas, seed):
    """(obj, probe, positions, data) of a single-slice phase object scanned on a raster."""
    pos = raster(n_scan, step)
    obj = phase_object((canvas, canvas), seed=seed)
    probe = default_probe()
    return obj, probe, pos, simulate(obj, probe, pos)


def corr(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))
