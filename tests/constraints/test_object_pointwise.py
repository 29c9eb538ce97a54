"""Point-wise object edits (pypty.constraints.object_pointwise; design 4.1, 4.2, 4.3).

Exact maps against direct NumPy transcriptions of the formulas (A = |O|, phi = arg O, O' = A' exp(i phi')),
idempotence of the clips, no change -> UNCHANGED, inputs untouched, the refine gate, and the z recentring
(integer slice shift with vacuum fill, probe propagated with pypty's Fresnel kernel, far-field patterns
unchanged when the pushed-out slices are vacuum).
"""
from types import SimpleNamespace

import numpy as np
import pytest

from pypty.constraints import REGISTRY, UNCHANGED
from pypty.constraints.object_pointwise import (ComplexRatio, MirroredAmplitude, ObjectAmplitudeBounds,
                                                ObjectPhasePositivity, ObjectZRecenter)
from pypty.model import MultisliceModel
from pypty.operators import bandlimit_mask, fresnel_kernel
from pypty.operators.optics import electron_wavelength_A
from pypty.parameters.errors import PyptyParameterError
from synthetic import KV, PIX, WIN, default_probe

P = dict(complex_ratio=True, complex_ratio_alpha1=1.0, complex_ratio_alpha2=0.0, complex_ratio_obj_type="both",
         mirrored_amp=True, mirrored_amp_relax=0.1, mirrored_amp_scale=0.03, mirrored_amp_power=4.0,
         obj_z_recenter=True, obj_z_recenter_thresh=95.0, obj_z_recenter_scale=1.0, obj_z_recenter_max_shift=10,
         obj_amplitude_bounds=(0.9, 1.05), obj_amplitude_bounds_relax=0.0,
         obj_phase_positivity=True, obj_phase_positivity_relax=0.0)


def _p(**kw):
    return dict(P, **kw)


def _ctx(refine=("obj",), model=None):
    return SimpleNamespace(settings=SimpleNamespace(refine=tuple(refine)), setup=SimpleNamespace(model=model),
                           position_offset=np.zeros(2), given_positions=None)


def _obj(seed=0, shape=(2, 2, 6, 7)):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.8, 1.2, shape) * np.exp(1j * rng.uniform(-1.0, 3.0, shape))  # phases up to 3 rad


def _polar(a, ph):
    return a * np.exp(1j * ph)


def _apply(cls, p, bk, obj, refine=("obj",)):
    """Apply on the device, check the input is untouched; (new object as NumPy or None, change)."""
    dev = bk.asarray(obj)
    new, change = cls(p, bk).apply({"obj": dev}, 0, _ctx(refine))
    np.testing.assert_array_equal(bk.to_numpy(dev), obj)
    assert set(new) <= {"obj"}
    return (bk.to_numpy(new["obj"]) if "obj" in new else None), change


def test_registry_order():
    names = list(REGISTRY)
    order = ["complex_ratio", "mirrored_amp", "obj_z_recenter", "obj_amplitude_bounds", "obj_phase_positivity"]
    assert [n for n in names if n in order] == order


# ----------------------------------------------------------------------------- complex ratio

@pytest.mark.parametrize("kind", ["both", "amplitude", "phase"])
def test_complex_ratio_map(bk, kind):
    obj = _obj(1)
    a1, a2 = 0.7, 0.4
    out, change = _apply(ComplexRatio, _p(complex_ratio_alpha1=a1, complex_ratio_alpha2=a2,
                                         complex_ratio_obj_type=kind), bk, obj)
    assert change.kind == "reset"
    a, ph = np.abs(obj), np.angle(obj)
    cbar = np.sum(np.abs(np.log(a))) / (np.sum(np.abs(ph)) + 1e-8)
    a_new = np.exp((1 - a1) * np.log(a) - a1 * cbar * ph) if kind != "phase" else a
    ph_new = (1 - a2) * ph - a2 / (cbar + 1e-8) * np.log(a) if kind != "amplitude" else ph
    np.testing.assert_allclose(out, _polar(a_new, ph_new), rtol=1e-12, atol=1e-13)


def test_complex_ratio_defaults_and_vacuum(bk):
    obj = _obj(2)
    out, _ = _apply(ComplexRatio, _p(), bk, obj)  # alpha1 = 1, alpha2 = 0: A' = exp(-Cbar phi), phi kept
    a, ph = np.abs(obj), np.angle(obj)
    cbar = np.sum(np.abs(np.log(a))) / (np.sum(np.abs(ph)) + 1e-8)
    np.testing.assert_allclose(out, _polar(np.exp(-cbar * ph), ph), rtol=1e-12, atol=1e-13)
    assert _apply(ComplexRatio, _p(), bk, np.ones((2, 1, 4, 4), complex)) == (None, UNCHANGED)
    # a zero amplitude is clamped, not -inf / nan
    z = obj.copy()
    z[0, 0, 0, 0] = 0
    assert np.all(np.isfinite(_apply(ComplexRatio, _p(complex_ratio_alpha1=0.5, complex_ratio_alpha2=0.5),
                                     bk, z)[0]))


# ----------------------------------------------------------------------------- mirrored amplitude

@pytest.mark.parametrize("relax", [0.0, 0.1, 0.6])
def test_mirrored_amp_map(bk, relax):
    obj = _obj(3)
    out, change = _apply(MirroredAmplitude, _p(mirrored_amp_relax=relax), bk, obj)
    assert change.kind == "reset"
    a, ph = np.abs(obj), np.angle(obj)
    target = np.maximum(1 - 0.03 * np.maximum(ph, 0) ** 4, 0)  # clamped: phases above ~2.4 rad give 0
    assert np.any(1 - 0.03 * np.maximum(ph, 0) ** 4 < 0)
    ref = _polar(relax * a + (1 - relax) * target, ph)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)
    assert np.all(np.abs(out) >= 0) and np.all(np.isfinite(out))
    assert _apply(MirroredAmplitude, _p(mirrored_amp_relax=1.0), bk, obj) == (None, UNCHANGED)


# ----------------------------------------------------------------------------- amplitude bounds

@pytest.mark.parametrize("relax", [0.0, 0.3])
def test_amplitude_bounds_map_and_idempotence(bk, relax):
    obj = _obj(4)
    out, change = _apply(ObjectAmplitudeBounds, _p(obj_amplitude_bounds_relax=relax), bk, obj)
    assert change.kind == "reset"
    a, ph = np.abs(obj), np.angle(obj)
    ref = _polar(relax * a + (1 - relax) * np.clip(a, 0.9, 1.05), ph)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)
    if relax == 0:
        again, _ = _apply(ObjectAmplitudeBounds, _p(), bk, out)
        np.testing.assert_allclose(again if again is not None else out, out, rtol=1e-14, atol=0)
        assert np.all((np.abs(out) >= 0.9 - 1e-14) & (np.abs(out) <= 1.05 + 1e-14))


def test_amplitude_bounds_switch_and_inside(bk):
    inside = 0.95 * np.exp(1j * np.linspace(-1, 1, 24)).reshape(1, 1, 4, 6)
    assert _apply(ObjectAmplitudeBounds, _p(), bk, inside) == (None, UNCHANGED)
    assert ObjectAmplitudeBounds.from_params(_p(obj_amplitude_bounds=None), bk) is None
    c = ObjectAmplitudeBounds.from_params(_p(obj_amplitude_bounds=lambda e: (0.9, 1.1) if e == 2 else None), bk)
    assert [c.active(e) for e in range(4)] == [False, False, True, False]
    bad = ObjectAmplitudeBounds(_p(obj_amplitude_bounds=lambda e: (1.1, 0.9)), bk)
    with pytest.raises(PyptyParameterError, match="obj_amplitude_bounds"):
        bad.apply({"obj": bk.asarray(_obj(5))}, 0, _ctx())


# ----------------------------------------------------------------------------- phase positivity

@pytest.mark.parametrize("relax", [0.0, 0.25])
def test_phase_positivity_map_and_idempotence(bk, relax):
    obj = _obj(6)
    out, change = _apply(ObjectPhasePositivity, _p(obj_phase_positivity_relax=relax), bk, obj)
    assert change.kind == "reset"
    a, ph = np.abs(obj), np.angle(obj)
    ref = _polar(a, relax * ph + (1 - relax) * np.maximum(ph, 0))
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-13)
    if relax == 0:
        assert np.all(np.angle(out) >= 0)
        assert _apply(ObjectPhasePositivity, _p(), bk, out) == (None, UNCHANGED)  # idempotent, bit for bit


def test_refine_gate_and_no_change(bk):
    obj = _obj(7)
    for cls in (ComplexRatio, MirroredAmplitude, ObjectAmplitudeBounds, ObjectPhasePositivity, ObjectZRecenter):
        assert _apply(cls, _p(), bk, obj, refine=("probe", "positions")) == (None, UNCHANGED)
    positive = np.abs(obj) * np.exp(1j * np.abs(np.angle(obj)))
    out, change = _apply(ObjectPhasePositivity, _p(), bk, positive)
    assert (out, change) == (None, UNCHANGED)


def test_check_params():
    assert all(cls.check_params(_p(slice_distances=np.array([2.0]), num_slices=4)) == [] for cls in
               (ComplexRatio, MirroredAmplitude, ObjectZRecenter, ObjectAmplitudeBounds, ObjectPhasePositivity))
    msg = ComplexRatio.check_params(_p(complex_ratio_obj_type="real", complex_ratio_alpha1=1.5))
    assert len(msg) == 2 and any("complex_ratio_obj_type" in m for m in msg) and \
        any("complex_ratio_alpha1" in m for m in msg)
    assert "mirrored_amp_relax" in MirroredAmplitude.check_params(_p(mirrored_amp_relax=-0.1))[0]
    assert "mirrored_amp_power" in MirroredAmplitude.check_params(_p(mirrored_amp_power=0.0))[0]
    assert "obj_amplitude_bounds" in ObjectAmplitudeBounds.check_params(_p(obj_amplitude_bounds=(1.0, 1.0)))[0]
    assert ObjectAmplitudeBounds.check_params(_p(obj_amplitude_bounds=lambda e: None)) == []
    assert "obj_amplitude_bounds_relax" in ObjectAmplitudeBounds.check_params(_p(obj_amplitude_bounds_relax=2))[0]
    assert "obj_phase_positivity_relax" in ObjectPhasePositivity.check_params(_p(obj_phase_positivity_relax=2))[0]
    msg = ObjectZRecenter.check_params(_p(slice_distances=np.array([2.0, 2.0, 3.0]), num_slices=3))
    assert len(msg) == 1 and "slice_distances" in msg[0]
    assert ObjectZRecenter.check_params(_p(obj_z_recenter=False, slice_distances=np.array([1.0, 2.0]))) == []
    assert "num_slices = 1" in ObjectZRecenter.warnings(_p(num_slices=1))[0]
    assert ObjectZRecenter.warnings(_p(num_slices=3)) == []


# ----------------------------------------------------------------------------- z recentring

DZ = 2.0


def _model(bk, n_slices):
    return MultisliceModel(bk, (WIN, WIN), (PIX, PIX), electron_wavelength_A(KV), (DZ,) * n_slices, np.complex128,
                           acc_voltage_kV=KV)


def _stack(n_slices, filled, canvas=44, seed=8):
    """(S, 1, canvas, canvas): the same random phase bumps in the slices ``filled``, vacuum elsewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:canvas, :canvas]
    ph = np.zeros((canvas, canvas))
    for _ in range(40):
        cy, cx = rng.uniform(0, canvas, 2)
        ph += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.5**2))
    obj = np.ones((n_slices, 1, canvas, canvas), complex)
    for s in filled:
        obj[s, 0] = 0.97 * np.exp(0.5j * ph / ph.max())
    return obj


def test_z_recenter_moves_phase_to_the_middle(bk):
    n_slices = 6
    obj = _stack(n_slices, filled=(4, 5))  # com 4.5, centre 2.5: shift -2 slices
    probe = np.transpose(default_probe(), (2, 0, 1))[None]  # (1, 1, Y, X)
    pos = np.array([[0.0, 0.0], [5.0, 9.0], [12.0, 3.0]])
    model = _model(bk, n_slices)
    arrays = {"obj": bk.asarray(obj), "probe": bk.asarray(probe), "positions": bk.asarray(pos)}
    c = ObjectZRecenter(_p(), bk)
    assert c.slice_shift(arrays["obj"], 0) == -2
    new, change = c.apply(arrays, 0, _ctx(model=model))
    assert change.kind == "reset" and set(new) == {"obj", "probe"} and "-2" in change.reason
    np.testing.assert_array_equal(bk.to_numpy(arrays["obj"]), obj)  # inputs untouched
    np.testing.assert_array_equal(bk.to_numpy(arrays["probe"]), probe)
    # direct transcription: O'[s] = O[s + 2], vacuum at the bottom; P' = F^-1[F(P) K(+2 dz)] (unitary FFTs)
    ref_obj = np.ones_like(obj)
    ref_obj[:4] = obj[2:]
    np.testing.assert_array_equal(bk.to_numpy(new["obj"]), ref_obj)
    k = fresnel_kernel((WIN, WIN), (PIX, PIX), electron_wavelength_A(KV), 2 * DZ, 2 / 3, 0.0)
    ref_probe = np.fft.ifft2(np.fft.fft2(probe, norm="ortho") * k, norm="ortho")
    np.testing.assert_allclose(bk.to_numpy(new["probe"]), ref_probe, rtol=0, atol=1e-12 * np.abs(probe).max())
    # the pushed-out slices were vacuum: the far-field patterns are the same inside the band limit of the
    # propagator (the last object slice now has propagations after it, which cut the frequencies beyond)
    band = bandlimit_mask((WIN, WIN), 2 / 3) > 0  # FFT order, like the predicted patterns
    before = bk.to_numpy(model.predict(arrays, np.arange(3)))
    after = bk.to_numpy(model.predict(dict(arrays, **new), np.arange(3)))
    np.testing.assert_allclose(after[:, band], before[:, band], rtol=0, atol=1e-10 * before.max())
    # now centred: nothing more to do
    assert c.apply(dict(arrays, **new), 1, _ctx(model=model)) == ({}, UNCHANGED)


def test_z_recenter_shift_rules(bk):
    c = ObjectZRecenter(_p(), bk)
    top = bk.asarray(_stack(7, filled=(0,)))  # com 0, centre 3: +3 slices
    assert c.slice_shift(top, 0) == 3
    assert ObjectZRecenter(_p(obj_z_recenter_max_shift=1), bk).slice_shift(top, 0) == 1
    assert ObjectZRecenter(_p(obj_z_recenter_scale=0.5), bk).slice_shift(top, 0) == 2  # 1.5 rounds away from 0
    assert c.slice_shift(bk.asarray(_stack(7, filled=(3,))), 0) == 0  # centred
    assert c.slice_shift(bk.asarray(np.ones((5, 1, 8, 8), complex)), 0) == 0  # no positive phase: no shift
    assert c.slice_shift(bk.asarray(_stack(1, filled=(0,))), 0) == 0  # one slice
    # shifting down: vacuum on top, probe propagated backwards (-n dz)
    obj = _stack(7, filled=(0,))
    probe = np.transpose(default_probe(), (2, 0, 1))[None]
    new, _ = c.apply({"obj": bk.asarray(obj), "probe": bk.asarray(probe)}, 0, _ctx(model=_model(bk, 7)))
    ref_obj = np.ones_like(obj)
    ref_obj[3:] = obj[:4]
    np.testing.assert_array_equal(bk.to_numpy(new["obj"]), ref_obj)
    k = fresnel_kernel((WIN, WIN), (PIX, PIX), electron_wavelength_A(KV), -3 * DZ, 2 / 3, 0.0)
    ref_probe = np.fft.ifft2(np.fft.fft2(probe, norm="ortho") * k, norm="ortho")
    np.testing.assert_allclose(bk.to_numpy(new["probe"]), ref_probe, rtol=0, atol=1e-12 * np.abs(probe).max())


def test_z_recenter_needs_uniform_slices(bk):
    model = MultisliceModel(bk, (WIN, WIN), (PIX, PIX), electron_wavelength_A(KV), (2.0, 2.0, 3.0), np.complex128)
    obj = bk.asarray(_stack(3, filled=(2,), canvas=WIN))
    probe = bk.asarray(np.transpose(default_probe(), (2, 0, 1))[None])
    with pytest.raises(PyptyParameterError, match="slice_distances"):
        ObjectZRecenter(_p(), bk).apply({"obj": obj, "probe": probe}, 0, _ctx(model=model))


def test_single_precision_keeps_dtypes(bk):
    obj = _obj(9).astype(np.complex64)
    for cls in (ComplexRatio, MirroredAmplitude, ObjectAmplitudeBounds, ObjectPhasePositivity):
        out, change = _apply(cls, _p(), bk, obj)
        assert change.kind == "reset" and out.dtype == np.complex64 and np.all(np.isfinite(out))
    stack = _stack(4, filled=(3,), canvas=WIN).astype(np.complex64)
    probe = np.transpose(default_probe(), (2, 0, 1))[None].astype(np.complex64)
    model = MultisliceModel(bk, (WIN, WIN), (PIX, PIX), electron_wavelength_A(KV), (DZ,) * 4, np.complex64)
    new, _ = ObjectZRecenter(_p(), bk).apply({"obj": bk.asarray(stack), "probe": bk.asarray(probe)}, 0,
                                             _ctx(model=model))
    assert new["obj"].dtype == np.complex64 and new["probe"].dtype == np.complex64
