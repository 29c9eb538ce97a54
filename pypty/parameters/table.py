"""The parameter table: every key of ``pypty_params``, one row each, by section in contract order.

Rows follow the sections and order of the parameter contract
(``shared/reference/pypty_parameters.md``); pypty's own additions are marked
``extension=True``.  A row is written with ``_p`` (:mod:`pypty.parameters.row`)
and its value check with the builders of :mod:`pypty.parameters.checks`.
Choices implemented by the output modules are imported from there, so that
each option has one set of choices.  ``docs/parameters.md`` is generated
from this table (``python scripts/generate_parameter_docs.py``).
"""

from __future__ import annotations

from typing import Dict, Tuple

from ..output.exports import BIT_DEPTHS, FOVS, TIFF_QUANTITIES
from ..output.figures import FIGURE_CHOICES
from ..output.folders import AFFIX_CHOICES
from .checks import (_array, _backend, _bool_or_int, _compute_batch, _custom, _dtype_or_none, _flag, _float,
                     _hist_length, _int, _int_pair, _max_count, _origins, _path, _percentiles,
                     _phase_plate, _real_pair, _sequence, _static_background, _str, _str_list, _time_prefix,
                     _window, _sigma_flag, _fancy_sigma, _amplitude_bounds, _probe_mask)
from .row import ArrayDefault, Parameter, _p, index_table

__all__ = ["PARAMETERS", "SECTIONS", "DEFAULT_COMPUTE_BATCH"]

#: Default of ``compute_batch``: sized from free memory (see :mod:`pypty.data.memory`).
DEFAULT_COMPUTE_BATCH = "auto"

_WEIGHT = _float(ge=0)
_ANY_FLOAT = _float()
_FLAG = _flag()

_TABLE = [
    ("Backend Settings", [
        _p("backend", None, "None", "Array backend; None picks CuPy when a GPU is available, "
           "else NumPy (the contract's default is the CuPy module).",
           _custom("None", _backend), supported=True, support_note="default only"),
        _p("default_dtype", "double", "str", "Floating-point precision of the computation.",
           choices=("double", "single"), supported=True),
    ]),
    ("Dataset", [
        _p("data_path", "", "str", "Path of the measurements: .h5 file with a 'data' dataset "
           "(N, ky, kx), or a 3D/4D .npy file.", _path(), supported=True),
        _p("dataset", None, "array or None", "In-memory measurements (N, ky, kx) or "
           "(scan_y, scan_x, ky, kx), or compressed signals (N, n_masks) for 'lsq_compressed'; when "
           "given, data_path is ignored (kept as a read-only view, not copied).",
           _array(ndim=(2, 3, 4), kinds="iuf", optional=True, readonly_view=True),
           supported=True),
        _p("masks", None, "array or None", "Virtual-detector masks (n_masks, ky, kx), centred like "
           "the patterns, for compressed data (N, n_masks) with algorithm 'lsq_compressed': the "
           "model patterns are projected onto the masks; None for ordinary patterns.",
           _array(ndim=3, kinds="iuf", optional=True, finite=True), supported=True),
        _p("allow_external_hdf5", False, "bool", "pypty extension: accept HDF5 inputs whose data are kept "
           "in other files (external links, external raw storage, virtual datasets with sources in other "
           "files); by default these are refused so that an input file cannot make pypty read other local "
           "files.", _FLAG, supported=True, extension=True),
        _p("data_multiplier", 1, "float", "Factor applied to every pattern when it is read.",
           _float(gt=0), supported=True),
        _p("data_pad", 0, "int", "Padding added around every pattern when read (a quarter of "
           "the pattern width gives good far-field sampling).", _int(ge=0), unit="px",
           supported=True),
        _p("data_bin", 1, "int", "Binning factor applied to the patterns when read.",
           _int(ge=1), supported=True),
        _p("flip_ky", False, "bool", "Flip the patterns along ky when read.", _FLAG,
           supported=True),
        _p("data_shift_vector", (0, 0), "pair of numbers", "Shift (y, x) applied to every "
           "pattern when read.", _custom("a list of two numbers (y, x)", _real_pair), unit="px",
           supported=True),
        _p("upsample_pattern", 1, "int", "Reciprocal-space upsampling factor u of the beam, for "
           "beams wider than the pattern extent: the probe window has u times the pattern's pixels "
           "and u x u model pixels are summed into one detector pixel.", _int(ge=1), supported=True),
        _p("sequence", None, "list of int or None", "Indices of the measurements used in the "
           "refinement; None uses all of them.",
           _custom("a list of ints >= 0 or None", _sequence), epoch=True, supported=True),
        _p("use_full_FOV", True, "bool", "With a sequence: size the object for all measurements "
           "(True) or only for the selected ones (False).", _FLAG, supported=True),
    ]),
    ("Saving and Printing", [
        _p("output_folder", "", "str", "Folder for outputs, logs and checkpoints.", _path(),
           supported=True),
        _p("save_loss_log", True, "bool", "Write the loss history to loss.csv.", _FLAG,
           supported=True),
        _p("epoch_prev", 0, "int", "Number of epochs already done (for restarts).", _int(ge=0),
           supported=True),
        _p("save_checkpoints_every_epoch", False, "bool or int", "Save numbered checkpoints: "
           "True every epoch, an int n every n-th epoch.", _bool_or_int(0), supported=True),
        _p("save_inter_checkpoints", True, "bool or int", "Save overwritable checkpoints "
           "(co.npy object, cp.npy probe, cg.npy positions, ...): True every epoch, an int n "
           "every n-th epoch.", _bool_or_int(0), supported=True),
        _p("print_flag", 3, "int", "Verbosity: 0 silent, 1 one updating line, 2-3 moderate, "
           "4 most detailed.", _int(ge=0, le=4), supported=True),
    ]),
    ("Results, Figures and Provenance (pypty extensions)", [
        _p("save_results_every", 10, "int", "pypty extension: write results.h5 (every refined array, loss "
           "history, parameters, provenance, convergence summary, optimizer state for an exact restart) "
           "after every n-th epoch and after the first epoch, so that a killed run can always be restarted (0: "
           "only at the end); it is always written at the end and when the run is interrupted (Ctrl-C, "
           "SIGTERM, SIGHUP, SIGUSR1).", _int(ge=0), epoch=True, supported=True, extension=True),
        _p("save_figures", ("loss", "object_phase", "probe", "positions"), "list of str", "pypty "
           "extension: PNG figures made at the end and at the save_figures_every cadence, into figures/: "
           "loss, object_phase (sum over slices and per slice), probe (real and reciprocal amplitude), "
           "positions (initial vs refined), patterns (model vs measured), or all; [] for none.",
           _str_list(FIGURE_CHOICES, "figure names"), supported=True, extension=True),
        _p("save_figures_every", 0, "int", "pypty extension: also make figures and TIFF exports after "
           "every n-th epoch (0: only at the end).", _int(ge=0), epoch=True, supported=True,
           extension=True),
        _p("save_tiff", (), "list of str", "pypty extension: TIFF exports into tiff/ (at the end and at "
           "the save_figures_every cadence): object_phase, object_amplitude (stacks over slices plus "
           "the projection), probe_amplitude, probe_phase; [] for none.",
           _str_list(TIFF_QUANTITIES, "quantities"), supported=True, extension=True),
        _p("tiff_bit_depths", ("raw",), "list of str", "pypty extension: TIFF bit depths: raw "
           "(float32 values), 32 (float32 scaled to 0..1), 16 (uint16 0..65535), 8 (uint8 0..255).",
           _str_list(BIT_DEPTHS, "bit depths"), supported=True, extension=True),
        _p("tiff_fov", ("crop",), "list of str", "pypty extension: object field of view in TIFF "
           "exports: crop (the region scanned by the probe-window centres) and/or full (the canvas).",
           _str_list(FOVS, "fields of view"), supported=True, extension=True),
        _p("convergence_percentiles", (15.0, 85.0), "pair of numbers", "pypty extension: phase "
           "percentiles separating background (below the first) and signal (above the second) in the "
           "convergence summary of results.h5.", _custom("two numbers 0 <= low < high <= 100",
                                                        _percentiles), supported=True, extension=True),
        _p("output_prefix_time", False, "bool or str", "pypty extension: start the run folder name "
           "with the time: True or 'date' (%Y%m%d), 'time', 'datetime' or a strftime format; when any "
           "naming option is set, output_folder is the parent of a new run folder.",
           _custom("a bool, 'date', 'time', 'datetime' or a strftime format", _time_prefix),
           supported=True, extension=True),
        _p("output_prefix", "", "str", "pypty extension: prefix of the run folder name (after the time).",
           _str(), supported=True, extension=True),
        _p("output_postfix", "", "str", "pypty extension: postfix of the run folder name.", _str(),
           supported=True, extension=True),
        _p("output_affixes", (), "list of str", "pypty extension: key settings encoded in the run "
           "folder name (presets minimal, default, all, or single affixes patterns, window, pmode, omode, "
           "slices, algorithm, hist, batch, refine, precision, kv, pixel, sequence, epochs).",
           _str_list(AFFIX_CHOICES, "affixes"), supported=True, extension=True),
        _p("overwrite_output", False, "bool", "pypty extension: allow writing into a folder that holds "
           "another run (otherwise a plain output_folder is refused and a named one gets _2, _3, ...).",
           _FLAG, supported=True, extension=True),
        _p("restart_from", "", "str", "pypty extension: results.h5 (or its run folder) to continue "
           "exactly: its arrays, epoch_prev, optimizer history and provenance replace obj, probe, "
           "positions and epoch_prev.", _path(), supported=True, extension=True),
        _p("parent_results", "", "str", "pypty extension: results file this run starts from (set by "
           "pypty.results.params_from_results); components whose initial array is the one saved there "
           "inherit its provenance history.", _path(), supported=True, extension=True),
        _p("provenance_note", "", "str", "pypty extension: note stored in this run's provenance entries.",
           _str(), supported=True, extension=True),
        _p("provenance_origins", None, "dict or None", "pypty extension: how initial arrays were made, "
           "per component (object, probe, positions, ...): a text such as 'simulated with abTEM' or a dict "
           "with action, source, note, metadata.", _custom("a dict {component: str or dict} or None",
                                                           _origins), supported=True, extension=True),
    ]),
    ("Experimental Parameters", [
        _p("acc_voltage", 60, "float", "Accelerating voltage of the microscope.", _float(gt=0),
           unit="kV", supported=True),
        _p("aperture_mask", None, "array or None", "Probe aperture in reciprocal space: a (Y, X) "
           "real array with values in [0, 1] at the probe-window shape, zero frequency at the centre, "
           "1 = allowed; the default mask of the reciprocal-space probe penalty "
           "(probe_reg_constraint_weight) when probe_constraint_mask is None.",
           _custom("a 2D real array with values in [0, 1] or None", _probe_mask), supported=True),
        _p("detector_blur_sigma", 0.0, "float", "pypty extension: standard deviation of a Gaussian "
           "point-spread function of the detector applied to every model pattern (after binning to "
           "the detector grid, periodic); 0 = off.", _float(ge=0), unit="detector px",
           supported=True, extension=True),
        _p("recon_type", "far_field", "str", "Reconstruction geometry.",
           choices=("far_field", "near_field"), supported=True),
        _p("alpha_near_field", 0.0, "float", "Near field: illumination semi-angle of the "
           "spatial-coherence envelope exp(-(pi alpha/lambda)^2 (lambda df k + Cs lambda^3 k^3)^2), "
           "which is 1 at k = 0 (the unscattered flux is preserved).", _float(ge=0), unit="mrad",
           supported=True),
        _p("defocus_array", ArrayDefault((0.0,)), "array", "Near-field defocus (propagation "
           "distance from the exit plane to the image plane, positive downstream), one common value "
           "or one per measurement; not used in far field.",
           _array(ndim=1, kinds="iuf", scalar_to_1d=True, finite=True), unit="Å", supported=True),
        _p("Cs", 0.0, "float", "Near field: spherical aberration of the imaging lens.", _ANY_FLOAT,
           unit="Å", supported=True),
    ]),
    ("Spatial Calibration", [
        _p("slice_distances", ArrayDefault((10.0,)), "array", "Distance between object slices, "
           "one common value or one per slice (a number is taken as a 1-element array).",
           _array(ndim=1, kinds="iuf", scalar_to_1d=True, finite=True), unit="Å",
           supported=True),
        _p("pixel_size_x_A", 1.0, "float", "Object pixel size along x.", _float(gt=0),
           unit="Å", supported=True),
        _p("pixel_size_y_A", 1.0, "float", "Object pixel size along y.", _float(gt=0),
           unit="Å", supported=True),
        _p("scan_size", None, "tuple of 2 ints or None", "Number of scan points (y, x); needed "
           "by the position and tilt grid constraints.",
           _custom("a pair of ints >= 1 (scan_y, scan_x) or None", _int_pair(1)),
           supported=True),
        _p("num_slices", 1, "int", "Number of object slices.", _int(ge=1), supported=True),
    ]),
    ("Refinable Arrays", [
        _p("obj", None, "array or None", "Initial transmission function (y, x, slices, modes); "
           "None means ones sized to fit the scan (contract: np.ones((1, 1, num_slices, 1)), "
           "padded with ones).", _array(ndim=4, kinds="iufc", optional=True, finite=True),
           supported=True),
        _p("probe", None, "array or None", "Initial real-space probe (y, x, modes) or "
           "(y, x, modes, subscans); None builds it from the data.",
           _array(ndim=(3, 4), kinds="iufc", optional=True, finite=True), supported=True),
        _p("positions", ArrayDefault(((0.0, 0.0),)), "array", "Scan positions (N, 2) as "
           "[[y0, x0], ...] in reconstruction pixels; one row for a single common point.",
           _array(ndim=2, last=2, kinds="iuf", finite=True), unit="px", supported=True),
        _p("tilts", ArrayDefault(((0.0,) * 6,)), "array", "Beam tilts (N, 6) in mrad: (y, x) "
           "before the specimen (a shift in the aperture plane), inside (a tilted Fresnel propagator "
           "between slices) and after (a shift in the detector plane); one row for a common tilt. "
           "Columns not used by tilt_mode must be zero.",
           _array(ndim=2, last=6, kinds="iuf", finite=True), unit="mrad", supported=True),
        _p("tilt_mode", 0, "int", "Which tilts are in the model (and refined): 0 inside; 1 after; "
           "2 before; 3 inside and after; 4 all three.", _int(ge=0, le=4), supported=True),
        _p("static_background", 0, "float or array", "Static background (counts per detector "
           "pixel) added to every model pattern, zero in the data_pad border; an array has the "
           "padded pattern shape or the shape before data_pad, a positive number creates a flat one, "
           "0 disables (refined as b^2, so start from a small positive value to refine it).",
           _custom("a float >= 0 or a 2D array", _static_background), unit="counts",
           supported=True),
        _p("beam_current", None, "array or None", "Relative beam current (or dwell time) per "
           "measurement, 1D of length N, multiplying the model pattern; None is all ones (created "
           "when update_beam_current can be on).", _array(ndim=1, kinds="iuf", optional=True,
                                                   finite=True), supported=True),
    ]),
    ("Propagation, Shifting, and Resizing", [
        _p("propmethod", "multislice", "str", "Propagation scheme; the two others are more "
           "accurate and slower: better_multislice is second order (Strang), yoshida fourth order "
           "(3x the propagations).", choices=("multislice", "better_multislice", "yoshida"),
           supported=True),
        _p("allow_subPixel_shift", True, "bool", "Use sub-pixel shifts; if False positions are "
           "rounded until they are refined.", _FLAG, supported=True),
        _p("dynamically_resize_yx_object", False, "bool or int", "Pad the object (with vacuum) "
           "when refined positions move a probe window out of it; an int n tolerates n px outside "
           "before padding. The optimizer history is kept (padded with zeros).",
           _bool_or_int(0), unit="px", epoch=True, supported=True),
        _p("extra_space_on_side_px", 0, "int", "Smallest margin between any probe window and the "
           "object edge; the canvas is padded with vacuum (and positions shifted) to provide it.",
           _int(ge=0), unit="px", supported=True),
    ]),
    ("Bandwidth Limitation", [
        _p("damping_cutoff_multislice", 2 / 3, "float", "Frequency cutoff (fraction of Nyquist) "
           "of the multislice propagation; above 2/3 aliasing may appear.",
           _float(gt=0, le=1), supported=True),
        _p("smooth_rolloff", 0, "float", "Width of a smooth roll-off at the frequency cutoff; "
           "0 gives a hard edge.", _float(ge=0), supported=True),
        _p("update_extra_cut", 0.005, "float", "The object (every slice and mode) is kept "
           "band-limited to |f| <= (damping_cutoff_multislice - update_extra_cut) / 2 cycles/px per "
           "axis: a projection of the object and its gradient (no optimizer reset).",
           _float(ge=0, lt=1), supported=True),
        _p("lazy_clean", False, "bool", "True: do not band-limit the object (only the propagator "
           "is band-limited).", _FLAG, supported=True),
    ]),
    ("Optimization Settings", [
        _p("algorithm", "lsq_sqrt", "str", "Loss: lsq_sqrt (Gaussian on amplitudes), ml "
           "(Poisson), lsq (squared intensities), lsq_sqrt_2 (modified Gaussian), lsq_compressed "
           "(virtual-detector signals). Epoch-dependent (pypty extension): a lambda returning a loss "
           "name switches the loss between epochs; the L-BFGS history is reset when the loss changes and "
           "loss.csv holds each epoch's own loss. Compressed data keep the constant 'lsq_compressed'. "
           "Counted data (about one count per pixel): lsq_sqrt is biased there (its eps is far below one "
           "count) and, with positions refined, drifts: on the shared MoS2 data (16,000 e/pattern) r peaks "
           "at 0.94 and falls to 0.78 while the scan expands (0.69 px); ml ends at 0.98-0.99 with positions "
           "at 0.125 px. Recommended for counted data: \"lambda x: 'lsq_sqrt' if x < 6 else 'ml'\" (r 0.90 "
           "at epoch 2, 0.95 at epoch 7; at 1/20 and 1/100 of the dose it also ends above ml alone), with "
           "the probe refined in the first 20 epochs only (no late decline); "
           "pypty.initialize.counted_data_settings gives the whole measured recipe by dose. Thick, "
           "band-limited multislice objects at high dose: keep lsq_sqrt (on a 10-slice bilayer, 1.6e5 "
           "e/pattern, the switch gave slice-summed r 0.952 against 0.958 and localised the lower layer "
           "worse); benchmarks/convergence.py, tables in docs/performance.md.",
           epoch=True,
           choices=("lsq_sqrt", "ml", "lsq", "lsq_sqrt_2", "lsq_compressed"), supported=True),
        _p("epoch_max", 200, "int", "Number of epochs to run.", _int(ge=0), supported=True),
        _p("wolfe_c1_constant", 0.1, "float", "Sufficient-decrease (first Wolfe) constant; "
           "0 < c1 < c2.", _float(gt=0, lt=1), epoch=True, supported=True),
        _p("wolfe_c2_constant", 0.9, "float", "Curvature (second Wolfe) constant; c1 < c2 < 1.",
           _float(gt=0, lt=1), epoch=True, supported=True),
        _p("loss_weight", 1, "float", "Factor multiplying the data loss.", _WEIGHT, epoch=True,
           supported=True),
        _p("max_count", 20, "int or None", "Largest number of loss evaluations in one line "
           "search before the step is rejected and the history reset; None or inf: no limit.",
           _custom("an int > 0, None or inf", _max_count), supported=True),
        _p("reduce_factor", 0.1, "float", "Step shrink factor when the first Wolfe condition "
           "fails.", _float(gt=0, lt=1), supported=True),
        _p("optimism", 3.0, "float", "Step growth factor when the second Wolfe condition fails.",
           _float(gt=1), supported=True),
        _p("min_step", 1e-20, "float", "Steps below this reset the history; 0 disables.",
           _float(ge=0), supported=True),
        _p("hist_length", 10, "int or inf", "Quasi-Newton memory: 0 gradient descent, 1 "
           "conjugate gradient, N L-BFGS, inf full BFGS.",
           _custom("an int >= 0 or inf", _hist_length), epoch=True, supported=True),
        _p("update_step_bfgs", 1, "float", "Initial step length tried by the line search.",
           _float(gt=0), epoch=True, supported=True),
        _p("phase_only_obj", False, "bool", "Refine only the phase of the object.", _FLAG,
           epoch=True, supported=True),
        _p("tune_only_probe_phase", False, "bool", "Refine only the reciprocal-space phase of "
           "the probe (its CTF); both this and tune_only_probe_abs on refines the whole probe.",
           _FLAG, epoch=True, supported=True),
        _p("tune_only_probe_abs", False, "bool", "Refine only the reciprocal-space amplitude of "
           "the probe (its aperture).", _FLAG, epoch=True, supported=True),
        _p("reset_history_flag", False, "bool", "Clear the optimiser history when true.", _FLAG,
           epoch=True, supported=True),
    ]),
    ("Updating Refinable Arrays", [
        _p("update_probe", 1, "bool", "Refine the probe.", _FLAG, epoch=True, supported=True),
        _p("update_obj", 1, "bool", "Refine the object.", _FLAG, epoch=True, supported=True),
        _p("update_probe_pos", 0, "bool", "Refine the scan positions.", _FLAG, epoch=True,
           supported=True),
        _p("update_tilts", 0, "bool", "Refine the tilts (the types selected by tilt_mode).", _FLAG,
           epoch=True, supported=True),
        _p("update_beam_current", 0, "bool", "Refine the beam current.", _FLAG, epoch=True,
           supported=True),
        _p("update_aberrations_array", 0, "bool", "Refine the aberrations array.", _FLAG,
           epoch=True, supported=True),
        _p("update_static_background", 0, "bool", "Refine the static background.", _FLAG,
           epoch=True, supported=True),
    ]),
    ("Multiple Illumination Functions", [
        _p("aberrations_array", ArrayDefault(((0.0,),)), "array", "Aberrations per subscan "
           "(N_subscans, N_aberrations) in Krivanek notation (columns C10, C12a, C12b, C21a, ...), "
           "each row a CTF exp(-i chi) applied to the probe of the measurements that use it; for "
           "beams that change across the field of view.",
           _array(ndim=2, kinds="iuf", finite=True), unit="Å", supported=True),
        _p("phase_plate_in_h5", None, "str or None", "HDF5 file whose 'configs' dataset holds "
           "one phase plate per measurement (N, y, x) in the probe's reciprocal space, centred: "
           "real values are phases (rad), complex values multiply the probe.",
           _custom("a str (path) or None", _phase_plate), supported=True),
        _p("aberration_marker", None, "array or None", "Row of aberrations_array used by each "
           "measurement, 1D of length N (needed when it has several rows).",
           _array(ndim=1, kinds="iu", optional=True), supported=True),
        _p("probe_marker", None, "array or None", "Probe (last axis of a 4D probe) used by each "
           "measurement, 1D of length N.", _array(ndim=1, kinds="iu", optional=True),
           supported=True),
    ]),
    ("Memory Usage", [
        _p("load_one_by_one", True, "bool", "Stream patterns to the device batch by batch "
           "instead of loading them all at once.", _FLAG, supported=True),
        _p("smart_memory", True, "bool", "Free cached device memory when needed to avoid "
           "fragmentation.", _FLAG, epoch=True, supported=True),
        _p("remove_fft_cache", False, "bool", "Drop the cached FFT plans after every epoch: CuPy's "
           "cuFFT plan cache on a GPU (its work areas are freed), the FFTW plans and their buffers on the "
           "CPU (FFTW's wisdom is kept, so re-planning is quick and gives the same plans). ducc0 (the CPU "
           "default) and scipy.fft keep no plans pypty can drop. Saves memory between epochs at the cost "
           "of re-planning at the next one.", _FLAG, supported=True),
        _p("compute_batch", DEFAULT_COMPUTE_BATCH, "int or str", "Measurements per multislice "
           'batch; "auto" picks the largest batch whose estimated working memory fits into '
           "memory_saturation of the free device memory on a GPU, and on the CPU a cache-sized batch "
           "(about 1 MiB per wave array, at least 4, one batch per thread at least; pypty/data/memory.py).",
           _custom('an int >= 1 or "auto"', _compute_batch), supported=True),
        _p("force_dataset_dtype", None, "dtype or None", "Storage dtype of the dataset; None "
           "uses the float type of default_dtype.",
           _custom("a numeric numpy dtype or None", _dtype_or_none), supported=True),
        _p("preload_to_cpu", False, "bool", "Read the whole dataset into host memory first "
           "(faster for .h5 files).", _FLAG, supported=True),
        _p("force_pad", False, "bool", "Pad the stored data once at start (more memory, faster) "
           "instead of on the fly.", _FLAG, supported=True),
        _p("memory_saturation", 0.7, "float", 'Fraction of free device memory targeted by '
           'compute_batch="auto".', _float(gt=0, le=1), supported=True),
    ]),
    ("Constraints Contributing to the Loss", [
        _p("mixed_variance_weight", 0, "float", "Weight w of the penalty on low-frequency differences "
           "between object modes: (w/K) sum |B_k - mean_k B|^2 with B = Gaussian low-pass of each "
           "mode (docs/regularization.md).", _WEIGHT, epoch=True, supported=True),
        _p("mixed_variance_sigma", 0.5, "float", "1/e half-width of the low-pass transfer "
           "exp(-f^2/sigma^2) of the mixed-variance penalty, in cycles per pixel (Nyquist = 0.5).",
           _float(gt=0), unit="cycles/px", epoch=True, supported=True),
        _p("probe_constraint_mask", None, "array or None", "Reciprocal-space mask (Y, X) of the "
           "probe window, values in [0, 1], zero frequency at the centre, 1 = allowed: the L2 penalty "
           "w sum (1 - mask) |F probe|^2 acts outside it; None uses aperture_mask.",
           _custom("a 2D real array with values in [0, 1] or None", _probe_mask), supported=True),
        _p("probe_reg_constraint_weight", 0, "float", "Weight of the reciprocal-space L2 probe "
           "penalty outside the mask; inf makes it a hard projection onto the mask (binary mask "
           "required).", _float(ge=0, allow_inf=True), unit="1/counts", supported=True),
        _p("probe_constraint_power_thresh", 1.0, "float", "pypty extension: the reciprocal-space "
           "probe penalty acts on the strongest probe modes up to this cumulative power fraction "
           "(1 = all modes).", _float(gt=0, le=1), epoch=True, extension=True, supported=True),
        _p("window_weight", 0, "float", "Weight of the real-space L2 probe penalty w sum W |probe|^2.",
           _WEIGHT, unit="1/counts", epoch=True, supported=True),
        _p("window", None, "array, [inner, outer] or None", "Real-space probe penalty map W: radii "
           "[r0, r1] as fractions of half the smaller window side (W = 0 inside r0, a cosine ramp to "
           "1 at r1), or a (Y, X) map >= 0 (1 = penalised).",
           _custom("a list [r0, r1] with 0 <= r0 < r1, a 2D array >= 0 or None", _window), epoch=True, supported=True),
        _p("abs_norm_weight", 0, "float", "Weight of the smooth L1 penalty on the absorptive "
           "potential -ln|transmission|.", _WEIGHT, supported=True),
        _p("abs_norm_eps", 1e-3, "float", "pypty extension: smoothing eps of the L1 absorption "
           "penalty, sqrt(a^2 + eps^2) - eps.", _float(gt=0), extension=True, supported=True),
        _p("phase_norm_weight", 0, "float", "Weight of the smooth L1 penalty on the object phase.",
           _WEIGHT, unit="1/rad", epoch=True, supported=True),
        _p("phase_norm_eps", 1e-3, "float", "pypty extension: smoothing eps of the L1 phase "
           "penalty.", _float(gt=0), unit="rad", extension=True, supported=True),
        _p("atv_weight", 0, "float", "Weight of the total-variation penalty sum (|Dx O|^p + "
           "|Dy O|^p)^(q/p) on every slice and mode (forward differences per pixel).", _WEIGHT,
           epoch=True, supported=True),
        _p("atv_q", 1, "float", "Outer exponent q of the total variation (1 edge-preserving TV, 2 "
           "quadratic smoothing); 0 < q <= 2.", _float(gt=0, le=2), epoch=True, supported=True),
        _p("atv_p", 2, "float", "Exponent p combining the x and y differences (2 isotropic, 1 "
           "anisotropic); p >= 1.", _float(ge=1), epoch=True, supported=True),
        _p("atv_eps", 1e-3, "float", "pypty extension: smoothing eps of the total variation (in "
           "units of the transmission per pixel).", _float(gt=0), extension=True, supported=True),
        _p("fast_axis_reg_weight_positions", 0, "float", "Penalty on the second difference of the "
           "positions along each scan row (needs scan_size).", _WEIGHT, unit="1/px^2", epoch=True, supported=True),
        _p("slow_axis_reg_weight_positions", 0, "float", "Penalty on the second difference of the "
           "positions along each scan column (needs scan_size).", _WEIGHT, unit="1/px^2",
           epoch=True, supported=True),
        _p("fast_axis_reg_weight_tilts", 0, "float", "Penalty on the second difference of the tilts "
           "along each scan row (needs scan_size and per-position tilts).", _WEIGHT,
           unit="1/mrad^2", epoch=True, supported=True),
        _p("slow_axis_reg_weight_tilts", 0, "float", "Penalty on the second difference of the tilts "
           "along each scan column (needs scan_size and per-position tilts).", _WEIGHT,
           unit="1/mrad^2", epoch=True, supported=True),
        _p("deformation_reg_weight_positions", 0, "float", "Penalty on the residual of the "
           "positions from their best affine scan grid (needs scan_size).", _WEIGHT, unit="1/px^2",
           epoch=True, supported=True),
        _p("deformation_reg_weight_tilts", 0, "float", "Penalty on the residual of the tilts from "
           "their best affine scan grid (needs scan_size and per-position tilts).", _WEIGHT,
           unit="1/mrad^2", epoch=True, supported=True),
        _p("wedge_mu", 0, "float", "pypty extension: weight of the missing-wedge penalty (see "
           "beta_wedge); beta_wedge acts only when this is > 0.", _WEIGHT, epoch=True,
           extension=True, supported=True),
        _p("pacbed_weight", 0, "float", "pypty extension: weight of the penalty on the difference "
           "between the mean model pattern and the mean measured pattern (PACBED), both raised to "
           "pacbed_dp_pow.", _WEIGHT, epoch=True, extension=True, supported=True),
        _p("pacbed_dp_pow", 0.2, "float", "pypty extension: power applied to the mean patterns of "
           "the PACBED penalty.", _float(gt=0, le=1), extension=True, supported=True),
    ]),
    ("Constraints That Modify the Object and Probe 'By Hand'", [
        _p("apply_gaussian_filter", False, "bool or float", "Gaussian-filter the object phase "
           "(wrap-safe) per slice and mode at the start of the epoch: True = sigma 1 px, or a sigma "
           "in px.", _custom("a bool or a float sigma >= 0", _sigma_flag), unit="px", epoch=True, supported=True),
        _p("apply_gaussian_filter_amplitude", False, "bool or float", "Gaussian-filter -ln|object| "
           "per slice and mode: True = sigma 1 px, or a sigma in px.",
           _custom("a bool or a float sigma >= 0", _sigma_flag), unit="px", epoch=True, supported=True),
        _p("beta_wedge", 0, "float", "Missing-wedge penalty: suppresses high kz at low kx, ky in "
           "the 3D object spectrum; the weight is 1/2 on the cone q_z/q_r = 1/beta_wedge (needs "
           "wedge_mu > 0).", _WEIGHT, epoch=True, supported=True),
        _p("keep_probe_states_orthogonal", False, "bool", "Orthogonalise the probe modes (eigenbasis "
           "of their Gram matrix, sorted by power; the model patterns do not change).",
           _FLAG, epoch=True, supported=True),
        _p("fix_probe_intensity", False, "bool", "pypty extension: keep the total probe intensity "
           "sum |probe|^2 of every subscan at its value when this switched on (an exact "
           "reparametrisation, no optimizer reset).", _FLAG, epoch=True, extension=True, supported=True),
        _p("do_charge_flip", False, "bool", "Apply charge flipping to the object phase and "
           "absorption.", _FLAG, epoch=True, supported=True),
        _p("cf_delta_phase", 0.1, "float", "Charge flipping: phases below this fraction of the "
           "slice maximum are flipped.", _ANY_FLOAT, epoch=True, supported=True),
        _p("cf_delta_abs", 0.01, "float", "Charge flipping: absorptions below this fraction of the "
           "slice maximum are flipped.", _ANY_FLOAT, epoch=True, supported=True),
        _p("cf_beta_phase", -0.95, "float", "Charge flipping: factor applied to the flipped "
           "phases.", _ANY_FLOAT, epoch=True, supported=True),
        _p("cf_beta_abs", -0.95, "float", "Charge flipping: factor applied to the flipped "
           "absorptions.", _ANY_FLOAT, epoch=True, supported=True),
        _p("fancy_sigma", None, "float, pair or None", "Charge flipping on a Wiener-deconvolved "
           "map: Gaussian sigma in px (one for both, or (phase, absorption) with None entries), "
           "reconvolved after flipping; None disables.",
           _custom("None, a float > 0 or a pair of (float > 0 or None)", _fancy_sigma), unit="px",
           epoch=True, supported=True),
        _p("fancy_sigma_eps", 1e-3, "float", "pypty extension: Wiener constant of the fancy_sigma "
           "deconvolution.", _float(gt=0), extension=True, supported=True),
        _p("restart_from_vacuum", False, "bool", "Reset the object to 1, keeping everything "
           "else (use a lambda that is true at one epoch).", _FLAG, epoch=True, supported=True),
        _p("reset_positions", False, "bool", "Reset positions to their given values, keeping "
           "everything else (use a lambda that is true at one epoch).", _FLAG, epoch=True, supported=True),
        _p("apply_gaussian_filter_z", False, "bool or float", "pypty extension: Gaussian filter of "
           "the object phase along the slices (sigma in slices; True = 1).",
           _custom("a bool or a float sigma >= 0", _sigma_flag), unit="slices", epoch=True,
           extension=True, supported=True),
        _p("apply_gaussian_filter_z_amplitude", False, "bool or float", "pypty extension: Gaussian "
           "filter of -ln|object| along the slices (sigma in slices; True = 1).",
           _custom("a bool or a float sigma >= 0", _sigma_flag), unit="slices", epoch=True,
           extension=True, supported=True),
        _p("kr_filter_radius", 0, "float", "pypty extension: lateral sigmoid low-pass of the object "
           "phase and/or amplitude at the start of the epoch, radius as a fraction of Nyquist; 0 = off.", _float(ge=0),
           epoch=True, extension=True, supported=True),
        _p("kr_filter_width", 0.05, "float", "pypty extension: width w of the kr filter's sigmoid "
           "edge 1/(1 + exp(10 (|f| - radius/2) / w)), f in cycles/px.", _float(gt=0), extension=True, supported=True),
        _p("kr_filter_obj_type", "both", "str", "pypty extension: what the kr filter acts on.",
           choices=("phase", "amplitude", "both"), supported=True, extension=True),
        _p("kz_filter_beta", 0, "float", "pypty extension: arctan kz filter of the object (a hand "
           "step of the missing-wedge penalty); beta as in beta_wedge; 0 = off.", _float(ge=0),
           epoch=True, extension=True, supported=True),
        _p("kz_filter_alpha", 1.0, "float", "pypty extension: lateral Gaussian damping "
           "exp(-alpha f^2) of the kz filter (f in cycles/px).", _float(ge=0), extension=True, supported=True),
        _p("kz_filter_obj_type", "both", "str", "pypty extension: what the kz filter acts on.",
           choices=("phase", "amplitude", "both"), supported=True, extension=True),
        _p("kz_filter_amplitude_factor", 0.9, "float", "pypty extension: after the kz filter the "
           "amplitude contrast is scaled, A <- 1 + factor (A - 1).", _float(gt=0, le=1),
           extension=True, supported=True),
        _p("dct_keep_fraction", 1.0, "float", "pypty extension: keep only this fraction of the "
           "largest 2D DCT coefficients of the object phase/amplitude (ranked over all slices and "
           "modes); 1 = off.", _float(gt=0, le=1), epoch=True, extension=True, supported=True),
        _p("dct_obj_type", "both", "str", "pypty extension: what the DCT threshold acts on.",
           choices=("phase", "amplitude", "both"), supported=True, extension=True),
        _p("complex_ratio", False, "bool", "pypty extension: couple the object amplitude and phase "
           "through their global ratio (complex-ratio constraint).", _FLAG, epoch=True,
           extension=True, supported=True),
        _p("complex_ratio_alpha1", 1.0, "float", "pypty extension: complex-ratio weight on the "
           "amplitude.", _float(ge=0, le=1), extension=True, supported=True),
        _p("complex_ratio_alpha2", 0.0, "float", "pypty extension: complex-ratio weight on the "
           "phase.", _float(ge=0, le=1), extension=True, supported=True),
        _p("complex_ratio_obj_type", "both", "str", "pypty extension: what the complex-ratio "
           "constraint edits.", choices=("phase", "amplitude", "both"), supported=True,
           extension=True),
        _p("mirrored_amp", False, "bool", "pypty extension: set the amplitude from the phase, "
           "A <- relax A + (1 - relax)(1 - scale max(phase, 0)^power), clamped at 0.", _FLAG,
           epoch=True, extension=True, supported=True),
        _p("mirrored_amp_relax", 0.1, "float", "pypty extension: relaxation of mirrored_amp.",
           _float(ge=0, le=1), extension=True, supported=True),
        _p("mirrored_amp_scale", 0.03, "float", "pypty extension: scale of mirrored_amp.",
           _float(ge=0), unit="rad^-power", extension=True, supported=True),
        _p("mirrored_amp_power", 4.0, "float", "pypty extension: power of mirrored_amp.",
           _float(gt=0), extension=True, supported=True),
        _p("obj_z_recenter", False, "bool", "pypty extension: shift the object by whole slices so "
           "that the centre of mass of its positive phase is in the middle of the stack, and "
           "propagate the probe accordingly.", _FLAG, epoch=True, extension=True, supported=True),
        _p("obj_z_recenter_thresh", 95.0, "float", "pypty extension: percentile of the phase below "
           "which pixels do not count in the z centre of mass.", _float(ge=0, le=100),
           extension=True, supported=True),
        _p("obj_z_recenter_scale", 1.0, "float", "pypty extension: fraction of the measured offset "
           "that is corrected.", _float(ge=0, le=1), extension=True, supported=True),
        _p("obj_z_recenter_max_shift", 10, "int", "pypty extension: largest shift per application.",
           _int(ge=0), unit="slices", extension=True, supported=True),
        _p("obj_amplitude_bounds", None, "[lo, hi] or None", "pypty extension: clip the object "
           "amplitude to [lo, hi].", _custom("None or a pair [lo, hi] with 0 <= lo < hi",
                                              _amplitude_bounds), epoch=True, extension=True, supported=True),
        _p("obj_amplitude_bounds_relax", 0.0, "float", "pypty extension: the result is relax * "
           "old + (1 - relax) * clipped.", _float(ge=0, le=1), extension=True, supported=True),
        _p("obj_phase_positivity", False, "bool", "pypty extension: clip negative object phases "
           "to 0.", _FLAG, epoch=True, extension=True, supported=True),
        _p("obj_phase_positivity_relax", 0.0, "float", "pypty extension: the result is relax * "
           "old + (1 - relax) * clipped.", _float(ge=0, le=1), extension=True, supported=True),
        _p("pos_recenter", False, "bool", "pypty extension: keep the mean of the position "
           "corrections at zero (a projection of the position updates; no optimizer reset).",
           _FLAG, epoch=True, extension=True, supported=True),
        _p("tilt_smooth_sigma", 0, "float", "pypty extension: Gaussian smoothing of the "
           "per-position tilts over the scan grid (sigma in scan positions; needs scan_size); "
           "0 = off.", _float(ge=0), unit="scan positions", epoch=True, extension=True,
           supported=True),
    ]),
    ("Beam Initialization", [
        _p("n_hermite_probe_modes", None, "tuple of 2 ints or None", "Hermite mode orders "
           "(nx, ny) used to create probe modes when probe is None: the probe times H_m(x) H_n(y), "
           "m < nx, n < ny (nx * ny modes, orthogonalised); None: one mode.",
           _custom("a pair of ints >= 1 or None", _int_pair(1)), supported=True),
        _p("defocus_spread_modes", None, "array or None", "Extra defocus (Å, > 0 underfocus) of "
           "each initial probe mode (1D), equal power, to model defocus spread when probe is None.",
           _array(ndim=1, kinds="iuf", optional=True, finite=True), unit="Å", supported=True),
        _p("aberrations", None, "array or None", "Initial aberrations, Krivanek order C10, C12a, "
           "C12b, C21a, C21b, C23a, C23b, C30, ... (1D).",
           _array(ndim=1, kinds="iuf", optional=True, finite=True), unit="Å", supported=True),
        _p("extra_probe_defocus", 0, "float", "Extra defocus added to the initial probe.",
           _ANY_FLOAT, unit="Å", supported=True),
        _p("estimate_aperture_based_on_binary", 0, "float", "If > 0 (and probe is None), the "
           "initial beam amplitude is the binary aperture of mean-pattern pixels above this factor "
           "times the data mean.", _float(ge=0), supported=True),
        _p("beam_ctf", None, "array or None", "Reciprocal-space beam (CTF), 2D with the "
           "(upsampled, padded) pattern shape, zero frequency at the centre; used as the initial "
           "beam when probe is None (aberrations are applied on top).",
           _array(ndim=2, kinds="iufc", optional=True, finite=True), supported=True),
        _p("mean_pattern", None, "array or None", "Mean diffraction pattern (2D) from which the "
           "initial probe is made by inverse Fourier transform.",
           _array(ndim=2, kinds="iuf", optional=True, finite=True), supported=True),
    ]),
]

#: Section headings in contract order.
SECTIONS: Tuple[str, ...]
#: Every parameter, keyed by name, in contract order.
PARAMETERS: Dict[str, Parameter]
SECTIONS, PARAMETERS = index_table(_TABLE)
