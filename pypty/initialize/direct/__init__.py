"""Direct (non-iterative) estimates from 4D-STEM data: centre of mass / iDPC and scan rotation
(:mod:`.com`), tilt-corrected bright field / parallax aberration fit (:mod:`.parallax`), and the blind
start :func:`from_data` (:mod:`.blind`).  See docs/direct_methods.md."""
from .blind import from_data
from .com import center_of_mass, fit_scan_rotation, idpc, rotate_com
from .parallax import bright_field_disk, fit_parallax, image_shifts, tcbf_image, virtual_bright_field

__all__ = ["bright_field_disk", "center_of_mass", "fit_parallax", "fit_scan_rotation", "from_data", "idpc",
           "image_shifts", "rotate_com", "tcbf_image", "virtual_bright_field"]
