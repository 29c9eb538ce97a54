"""Stateless forward operators of the multislice model, each with its adjoint next to it.

Every function is array-module generic (``xp`` = NumPy or CuPy, ``bk`` a
:class:`pypty.backend.Backend` where FFTs are needed) and holds no state.
All waves use the internal layout ``(..., Y, X)`` (FFT axes last); FFTs are
unitary.  Adjoints are with respect to the real inner product
``<a, b> = Re sum conj(a) b`` used throughout pypty, so for a linear operator
A, ``<A x, y> = <x, A^H y>``; for the detection operators (intensities) the
"adjoint" is the transpose of the Jacobian.  Gradients follow the Wirtinger
convention of :mod:`pypty.optim`: for a complex array z the gradient is
``G = 2 dL/d(conj z)`` (``dL = Re sum conj(G) dz``), and back-propagating G
through a linear map is applying its adjoint.

:class:`pypty.model.MultisliceModel` composes exactly these functions, and
``tests/operators/test_adjoint.py`` checks every pair with one dot-product
test table.

==================  ==================================================================
module              operators
==================  ==================================================================
``optics``          wavelength, Krivanek aberration phase, per-pattern CTF (+ gradient)
``shift``           sub-pixel Fourier shift of the probe (+ adjoint, + gradient)
``beam_tilt``       tilt phase before / after the specimen: ``modulate`` (+ adjoint, + gradient)
``patches``         window corners, gather of object patches, scatter-add (adjoint)
``transmission``    multiplication by the patches (+ both partial adjoints), O^w
``fresnel``         band-limited Fresnel propagation (+ adjoint), tilted propagation (+ gradient)
``detector``        far field, near field, binning of upsampled patterns, detector blur, virtual detectors
==================  ==================================================================
"""
from .beam_tilt import modulate, modulate_adjoint, tilt_phase, tilt_phase_gradient, window_coordinates_A
from .detector import (bin_pattern, bin_pattern_adjoint, blur_pattern, blur_pattern_adjoint, blur_transfer, compress,
                       compress_adjoint, farfield, farfield_adjoint, near_field, near_field_adjoint,
                       near_field_transfer)
from .fresnel import bandlimit_mask, fresnel_kernel, propagate, propagate_adjoint, tilt_gradient, tilt_ramp
from .optics import aberration_ctf, aberration_gradient, aberration_phase, electron_wavelength_A
from .patches import extract_patches, patch_indices, scatter_patches, scatter_rows, split_positions
from .shift import separable_phase, shift_gradient, shift_probe, shift_probe_adjoint, shift_ramp, yx_moments
from .transmission import (transmission_power, transmission_power_grad, transmit, transmit_adjoint,
                           transmit_patches_adjoint)

__all__ = [
    "aberration_ctf", "aberration_gradient", "aberration_phase", "electron_wavelength_A",
    "separable_phase", "yx_moments", "shift_ramp", "shift_probe", "shift_probe_adjoint", "shift_gradient",
    "window_coordinates_A", "tilt_phase", "tilt_phase_gradient", "modulate", "modulate_adjoint",
    "split_positions", "patch_indices", "extract_patches", "scatter_patches", "scatter_rows",
    "transmit", "transmit_adjoint", "transmit_patches_adjoint", "transmission_power", "transmission_power_grad",
    "bandlimit_mask", "fresnel_kernel", "propagate", "propagate_adjoint", "tilt_ramp", "tilt_gradient",
    "farfield", "farfield_adjoint", "near_field_transfer", "near_field", "near_field_adjoint",
    "bin_pattern", "bin_pattern_adjoint", "blur_transfer", "blur_pattern", "blur_pattern_adjoint",
    "compress", "compress_adjoint",
]
