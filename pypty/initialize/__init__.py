"""From raw 4D-STEM files and microscope numbers to ``pypty_params``.

- :mod:`pypty.initialize.dataset`: :func:`create_dataset` converts ``.npy``,
  ``.h5``, EMPAD ``.raw`` and rosettasciio formats (Merlin ``.mib``, Gatan
  ``.dm4``, ...) into a pypty dataset, chunk by chunk; :func:`open_4dstem`.
- :mod:`pypty.initialize.calibration`: :func:`pypty_params_from_dataset`,
  :func:`pypty_params_from_experiment` and the pieces (pixel sizes, scan
  positions with rotation, object size, slices).
- :mod:`pypty.initialize.probe`: initial probes (aberrations, binary
  aperture, beam CTF, Hermite and defocus-spread modes) and
  :func:`initial_probe`, the probe ``run`` builds when ``probe`` is None.
- :mod:`pypty.initialize.schedules`: :func:`epoch_schedule`, a (start, step,
  end) schedule as an epoch lambda string.
- :mod:`pypty.initialize.recipes`: :func:`counted_data_settings`, the
  measured recommendation (loss schedule, refinement order, regularizers) for
  counted data on thin specimens, by dose.
- :mod:`pypty.initialize.masks`: :func:`sigmoid_mask`, a soft aperture for
  the reciprocal-space probe penalty.

Typical use::

    from pypty import initialize
    initialize.create_dataset("scan.mib", "scan.h5", scan_shape=(128, 128), center=True,
                              acc_voltage_kV=300, semiangle_mrad=25, scan_step_A=0.4,
                              detector_pixel_mrad=0.9)
    params = initialize.pypty_params_from_dataset("scan.h5", thickness_A=100, num_slices=10,
                                                  defocus_A=150)
"""
from .calibration import (CalibrationError, detector_pixel_inv_A, object_shape_px, pypty_params_from_dataset,
                          pypty_params_from_experiment, reconstruction_pixel_size_A, scan_positions_px,
                          slice_settings)
from .direct import (center_of_mass, com_figure, fit_parallax, fit_scan_rotation, from_data, idpc,
                     parallax_figure, phase_images_figure, ssb, tcbf_image, virtual_bright_field)
from .dataset import DatasetError, centre_of_mass, create_dataset, open_4dstem
from .masks import sigmoid_mask
from .probe import (aperture_from_binary, defocus_spread_probe, hermite_modes, initial_probe,
                    probe_from_beam, probe_from_parameters)
from .recipes import LOW_DOSE_E_PER_PATTERN, counted_data_settings
from .schedules import epoch_schedule

__all__ = ["aperture_from_binary", "CalibrationError", "center_of_mass", "centre_of_mass", "com_figure",
           "counted_data_settings", "create_dataset", "DatasetError", "defocus_spread_probe",
           "detector_pixel_inv_A", "epoch_schedule", "fit_parallax", "fit_scan_rotation", "from_data",
           "hermite_modes", "idpc", "initial_probe", "LOW_DOSE_E_PER_PATTERN", "object_shape_px",
           "open_4dstem", "parallax_figure", "phase_images_figure", "probe_from_beam", "probe_from_parameters",
           "pypty_params_from_dataset", "pypty_params_from_experiment", "reconstruction_pixel_size_A",
           "scan_positions_px", "sigmoid_mask", "slice_settings", "ssb", "tcbf_image", "virtual_bright_field"]
