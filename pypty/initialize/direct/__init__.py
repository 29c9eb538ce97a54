"""Direct (non-iterative) estimates from 4D-STEM data: centre of mass / iDPC and scan rotation
(:mod:`.com`), tilt-corrected bright field / parallax aberration fit (:mod:`.parallax`), single-side-band
direct ptychography (:mod:`.ssb`), figures (:mod:`.figures`, matplotlib imported on use) and the blind
start :func:`from_data` (:mod:`.blind`).  See docs/direct_methods.md."""
from .blind import from_data
from .com import center_of_mass, fit_scan_rotation, idpc, rotate_com
from .figures import com_figure, parallax_figure, phase_images_figure
from .parallax import bright_field_disk, fit_parallax, image_shifts, tcbf_image, virtual_bright_field
from .ssb import aberration_phase_at, ssb

__all__ = ["aberration_phase_at", "bright_field_disk", "center_of_mass", "com_figure", "fit_parallax",
           "fit_scan_rotation", "from_data", "idpc", "image_shifts", "parallax_figure", "phase_images_figure",
           "rotate_com", "ssb", "tcbf_image", "virtual_bright_field"]
