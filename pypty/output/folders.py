"""Output folder naming: time prefix, prefix, postfix and affixes that encode the key settings.

Two modes, chosen by the parameters:

* **Plain** (default; none of ``output_prefix_time``, ``output_prefix``,
  ``output_postfix``, ``output_affixes`` set): ``output_folder`` is the run
  folder itself, as in pypty's contract.  If it already holds a run (a
  ``results.h5``, ``params.json``, ``loss.csv`` or ``co.npy``) the run is
  refused with :class:`FileExistsError` unless ``overwrite_output=True`` or
  the run continues that one: ``restart_from`` naming this folder's results,
  or ``epoch_prev > 0`` without ``parent_results`` (a continuation from the
  ``.npy`` checkpoints).  A follow-up run from
  :func:`pypty.results.params_from_results` (``parent_results`` set, no
  ``restart_from``) is a new run: it is refused in a folder holding a run,
  the parent's included.
* **Named**: ``output_folder`` is the parent folder and the run folder is
  ``<time>_<prefix>_<affixes...>_<postfix>`` inside it (empty parts are left
  out).  If that folder already holds a run, ``_2``, ``_3``, ... is appended
  unless ``overwrite_output=True``; an existing run is never overwritten
  silently.  A folder in use by a live run is always skipped.

**Claims.**  A run claims its folder before writing anything: it creates
``.pypty_run.lock`` with an exclusive create (``O_CREAT | O_EXCL``, atomic on
local filesystems and NFS v3+) holding its process id, host, process start
time and the time of the claim, and removes it when the run ends (normally,
by an error, Ctrl-C or SIGTERM).  A second run into the same folder finds the
claim and is refused with :class:`FolderBusyError` (a FileExistsError) before
it writes or removes anything, whichever of the two started first.  A claim
whose writer is gone (a run killed by SIGKILL or a crash) is stale and is
taken over with a message: on the same host when the process no longer runs
(or its id now belongs to a later process); from another host when the claim
has not been renewed for :data:`~pypty.output.atomic.STALE_AFTER_S` s (a run
renews it every epoch).  Two runs taking over the same stale claim are
serialised by a second exclusive file (``.pypty_run.lock.takeover``).

Public API: :data:`AFFIXES`, :data:`AFFIX_PRESETS`, :data:`AFFIX_CHOICES`, :func:`naming_active`,
:func:`run_folder_name`, :func:`is_run_folder`, :func:`check_plain_folder`,
:func:`resolve_output_folder`, :func:`claim_folder`, :func:`claim_output_folder`,
:class:`FolderClaim`, :class:`FolderBusyError`, :data:`CLAIM_NAME`.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import secrets
import time

import numpy as np

from .atomic import STALE_AFTER_S, host_tag, pid_alive, process_start

__all__ = ["AFFIXES", "AFFIX_PRESETS", "AFFIX_CHOICES", "naming_active", "run_folder_name", "is_run_folder",
           "check_plain_folder", "resolve_output_folder", "claim_folder", "claim_output_folder", "FolderClaim",
           "FolderBusyError", "CLAIM_NAME"]

#: Name of the claim file a live run keeps in its folder.
CLAIM_NAME = ".pypty_run.lock"
_UNREADABLE_GRACE_S = 60.0  # a claim file still empty or unreadable after this long is stale

_RUN_MARKERS = ("results.h5", "params.json", "loss.csv", "co.npy")


def _g(v) -> str:
    return f"{float(v):g}"


def _flag_text(p, name, short):
    v = p[name]
    if callable(v):
        return short + "~"  # epoch-dependent
    return short if v else ""


def _refine(p, info):
    parts = [_flag_text(p, "update_obj", "o"), _flag_text(p, "update_probe", "p"),
             _flag_text(p, "update_probe_pos", "g")]
    s = "".join(parts)
    return "ref" + s if s else "refnone"


def _hist(p, info):
    h = p["hist_length"]
    if callable(h):
        return "hist~"
    return "histinf" if h is None or (isinstance(h, float) and math.isinf(h)) else f"hist{int(h)}"


def _slices(p, info):
    n = int(p["num_slices"])
    if n == 1:
        return "1slice"
    dz = np.atleast_1d(np.asarray(p["slice_distances"], dtype=float))
    return f"{n}slice_dz{_g(dz[0])}" if np.all(dz == dz[0]) else f"{n}slice_dzvar"


#: Affix name -> function(validated params, info) -> text ("" = left out).  ``info`` holds
#: ``n_patterns``, ``window`` (Y, X) px, ``probe_modes`` and ``obj_modes``.
AFFIXES = {
    "patterns": lambda p, i: f"N{i['n_patterns']}",
    "window": lambda p, i: f"dp{i['window'][0]}" if i["window"][0] == i["window"][1]
    else f"dp{i['window'][0]}x{i['window'][1]}",
    "pmode": lambda p, i: f"p{i['probe_modes']}",
    "omode": lambda p, i: f"{i['obj_modes']}obj",
    "slices": _slices,
    "algorithm": lambda p, i: "loss~" if callable(p["algorithm"]) else str(p["algorithm"]),  # "~": epoch-dependent
    "hist": _hist,
    "batch": lambda p, i: f"b{int(p['compute_batch'])}",
    "refine": _refine,
    "precision": lambda p, i: str(p["default_dtype"]),
    "kv": lambda p, i: f"{_g(p['acc_voltage'])}kV",
    "pixel": lambda p, i: f"px{_g(p['pixel_size_x_A'])}A",
    "sequence": lambda p, i: "" if p["sequence"] is None else ("seq~" if callable(p["sequence"])
                                                                else f"seq{len(p['sequence'])}"),
    "epochs": lambda p, i: f"ep{int(p['epoch_max'])}",
}
#: Presets usable in ``output_affixes`` (combinable with single affixes).
AFFIX_PRESETS = {
    "minimal": ("patterns", "window", "pmode", "slices"),
    "default": ("patterns", "window", "pmode", "omode", "slices", "algorithm", "hist", "refine"),
    "all": tuple(AFFIXES),
}
#: Values of ``output_affixes`` (the parameter table's choices): presets, then single affixes.
AFFIX_CHOICES = tuple(AFFIX_PRESETS) + tuple(AFFIXES)


def naming_active(p: dict) -> bool:
    """True when any folder-naming parameter is set (``output_folder`` is then the parent)."""
    return bool(p["output_prefix_time"]) or bool(p["output_prefix"]) or bool(p["output_postfix"]) \
        or bool(p["output_affixes"])


def _time_text(v, when: datetime.datetime) -> str:
    if v is False or v is None or v == "":
        return ""
    fmt = {True: "%Y%m%d", "date": "%Y%m%d", "time": "%H%M%S", "datetime": "%Y%m%d_%H%M%S"}.get(v, v)
    return when.strftime(fmt)


def run_folder_name(p: dict, info: dict, when: datetime.datetime | None = None) -> str:
    """Run folder name ``<time>_<prefix>_<affixes...>_<postfix>`` (see the module docstring).

    Parameters
    ----------
    p : dict
        Validated parameters.
    info : dict
        ``n_patterns`` int, ``window`` (Y, X) px, ``probe_modes`` int, ``obj_modes`` int.
    when : datetime or None
        Time used for ``output_prefix_time`` (now if None).

    Returns
    -------
    str
        The name; never empty ("run" if every part is empty).  Affixes appear
        in the order of :data:`AFFIXES`, whatever their order in
        ``output_affixes``.
    """
    when = when or datetime.datetime.now()
    wanted = set()
    for a in p["output_affixes"]:
        wanted.update(AFFIX_PRESETS.get(a, (a,)))
    parts = [_time_text(p["output_prefix_time"], when), p["output_prefix"]]
    parts += [AFFIXES[a](p, info) for a in AFFIXES if a in wanted]
    parts.append(p["output_postfix"])
    name = "_".join(s for s in parts if s)
    return name.replace(os.sep, "-") or "run"


def is_run_folder(folder: str) -> bool:
    """True when ``folder`` holds outputs of a pypty run (results.h5, params.json, loss.csv or co.npy)."""
    return os.path.isdir(folder) and any(os.path.exists(os.path.join(folder, m)) for m in _RUN_MARKERS)


def _same_folder(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _refusal(p: dict, folder: str) -> str:
    """Why a plain run may not write into ``folder`` ("" when it may)."""
    if p["overwrite_output"] or not is_run_folder(folder):
        return ""
    if p["restart_from"]:
        src = os.fspath(p["restart_from"])
        src_folder = src if os.path.isdir(src) else os.path.dirname(os.path.abspath(src))
        if _same_folder(src_folder, folder):
            return ""
        return (f"parameter 'output_folder': '{folder}' already holds a pypty run, and restart_from continues "
                f"the run in '{src_folder}'; give an empty output_folder (or the restart_from folder itself), "
                f"or set overwrite_output=True to replace the run in '{folder}'")
    if p["parent_results"]:
        parent = os.fspath(p["parent_results"])
        parent_folder = parent if os.path.isdir(parent) else os.path.dirname(os.path.abspath(parent))
        whose = "the parent run (parent_results)" if _same_folder(parent_folder, folder) else "a pypty run"
        return (f"parameter 'output_folder': '{folder}' already holds {whose}; a follow-up run from "
                f"params_from_results is a new run and would overwrite it: give it another output_folder (or "
                f"output_prefix_time/output_affixes for a new folder inside it), use restart_from to continue "
                f"that run exactly, or set overwrite_output=True to replace it")
    if int(p["epoch_prev"]) > 0:
        return ""  # continuation from the .npy checkpoints of this folder
    return (f"parameter 'output_folder': '{folder}' already holds a pypty run; set overwrite_output=True to "
            f"replace it, epoch_prev/restart_from to continue it, or output_prefix_time/output_affixes to "
            f"make a new run folder inside it")


def check_plain_folder(p: dict) -> None:
    """In plain mode, refuse an ``output_folder`` that holds another run (see the module docstring).

    This check alone is not race-free; :func:`claim_output_folder` makes it
    under the folder's claim.

    Raises
    ------
    FileExistsError
        ``output_folder`` holds a run, and neither ``overwrite_output`` nor a
        continuation of that run was asked for.
    """
    out = p["output_folder"]
    if out and not naming_active(p):
        why = _refusal(p, out)
        if why:
            raise FileExistsError(why)


# ---------------------------------------------------------------------------- claims
class FolderBusyError(FileExistsError):
    """The folder is claimed by another run that is (or may be) alive."""


def _read_claim(path):
    """(content dict or None, raw bytes or None, mtime or None) of a claim file; (None, None, None) if absent."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None, None, None
    except OSError:
        return None, b"", time.time()
    try:
        info = json.loads(raw.decode())
        if not isinstance(info, dict):
            info = None
    except (ValueError, UnicodeDecodeError):
        info = None
    return info, raw, mtime


def _describe(info) -> str:
    if not info:
        return "a run whose claim cannot be read"
    return f"PID {info.get('pid')} on host {info.get('host')}, claimed {info.get('claimed')}"


def _stale_reason(info, mtime) -> str:
    """Why a claim's writer is gone ("" when it is, or may be, alive)."""
    age = time.time() - (mtime if mtime is not None else time.time())
    if info is None:
        return f"unreadable claim untouched for {age:.0f} s" if age > _UNREADABLE_GRACE_S else ""
    try:
        pid = int(info.get("pid"))
    except (TypeError, ValueError):
        pid = -1
    if info.get("host") == host_tag():
        return "" if pid_alive(pid, info.get("start")) else f"process {pid} no longer runs"
    if age > STALE_AFTER_S:
        return f"claim from host {info.get('host')} not renewed for {age:.0f} s"
    return ""


class FolderClaim:
    """A run's claim on its folder (see the module docstring); release it when the run ends.

    Attributes
    ----------
    folder : str
        The claimed folder.
    path : str
        The claim file.
    created : bool
        The folder was created for this run.
    preexisting : set of str
        Names in the folder when it was claimed.
    progress : bool
        Set by the run once it has something to keep (an epoch completed or
        a results file written); :meth:`release` then keeps every file.
    """

    def __init__(self, folder, path, token, created, preexisting, taken_over=""):
        self.folder, self.path, self.token = folder, path, token
        self.created, self.preexisting = created, set(preexisting)
        self.taken_over = taken_over
        self.progress = False
        self.released = False

    def touch(self) -> None:
        """Renew the claim (its modification time), so other hosts see the run alive."""
        try:
            os.utime(self.path)
        except OSError:
            pass

    def owned(self) -> bool:
        info, _, _ = _read_claim(self.path)
        return bool(info) and info.get("token") == self.token

    def discard_new(self, names=("params.json", "loss.csv")) -> list:
        """Remove the files among ``names`` that this run created; returns the removed names."""
        removed = []
        for name in names:
            if name in self.preexisting:
                continue
            try:
                os.unlink(os.path.join(self.folder, name))
                removed.append(name)
            except OSError:
                pass
        return removed

    def release(self, keep_files: bool | None = None) -> None:
        """Remove the claim; without ``progress`` (and ``keep_files`` not True) also this run's new files.

        A run that stopped before it had anything to keep (no epoch
        completed, no results file) removes the ``params.json`` and
        ``loss.csv`` it created, and the folder itself when it created it and
        it is empty, so a corrected rerun is not refused.
        """
        if self.released:
            return
        self.released = True
        if keep_files is None:
            keep_files = self.progress
        if not keep_files:
            self.discard_new()
        if self.owned():
            try:
                os.unlink(self.path)
            except OSError:
                pass
        if not keep_files and self.created:
            try:
                os.rmdir(self.folder)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _take_over(path, raw, why, say):
    """Remove a stale claim (whose content was ``raw``) under the takeover guard; False if another run is at it."""
    guard = path + ".takeover"
    for _ in range(2):
        try:
            fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            try:
                if time.time() - os.stat(guard).st_mtime > _UNREADABLE_GRACE_S:
                    os.unlink(guard)  # left by a run killed while taking over
                    continue
            except OSError:
                continue
            return False
    else:
        return False
    try:
        os.close(fd)
        _, now, _ = _read_claim(path)
        if now == raw:  # still the stale claim (not a fresh one of a run that got here first)
            os.unlink(path)
            if say is not None:
                say(f"pypty: took over the claim on '{os.path.dirname(path)}' of a run that is gone ({why})")
        return True
    finally:
        try:
            os.unlink(guard)
        except OSError:
            pass


def claim_folder(folder: str, say=None) -> FolderClaim:
    """Create ``folder`` if needed and claim it for this run (see the module docstring).

    Parameters
    ----------
    folder : str
    say : callable(str) or None
        Receives the message when a stale claim is taken over.

    Raises
    ------
    FolderBusyError
        Another live run holds the folder (the message names it and the claim file).
    """
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    preexisting = set(os.listdir(folder)) - {CLAIM_NAME}
    path = os.path.join(folder, CLAIM_NAME)
    token = secrets.token_hex(8)
    info = {"pid": os.getpid(), "host": host_tag(), "start": process_start(os.getpid()), "token": token,
            "claimed": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    taken = ""
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder, raw, mtime = _read_claim(path)
            if raw is None:
                continue  # released meanwhile
            why = _stale_reason(holder, mtime)
            if not why or not _take_over(path, raw, why, say):
                if created:
                    try:
                        os.rmdir(folder)
                    except OSError:
                        pass
                raise FolderBusyError(
                    f"parameter 'output_folder': '{folder}' is in use by another pypty run ({_describe(holder)}); "
                    f"wait for it to end or choose another folder.  If that run is gone, delete '{path}'")
            taken = why
            continue
        try:
            os.write(fd, (json.dumps(info) + "\n").encode())
        finally:
            os.close(fd)
        return FolderClaim(folder, path, token, created, preexisting, taken)
    raise FolderBusyError(f"parameter 'output_folder': '{folder}' could not be claimed (claims keep changing)")


def claim_output_folder(p: dict, info: dict | None = None, when: datetime.datetime | None = None,
                        say=None) -> FolderClaim | None:
    """Claim the run folder of the parameters (None when ``output_folder`` is empty).

    Plain mode claims ``output_folder`` and then applies the rules of
    :func:`check_plain_folder` under the claim (releasing it when refused).
    Named mode (``info`` required, see :func:`run_folder_name`) claims
    ``output_folder/<name>``, or ``<name>_2``, ``_3``, ... while a folder
    holds another run (unless ``overwrite_output``) or is in use by a live run.

    Raises
    ------
    FolderBusyError
        Plain mode: another live run holds ``output_folder``.
    FileExistsError
        Plain mode: ``output_folder`` holds a run this run may not write into.
    """
    out = p["output_folder"]
    if not out:
        return None
    if not naming_active(p):
        claim = claim_folder(out, say)
        why = _refusal(p, out)
        if why:
            claim.release(keep_files=True)
            raise FileExistsError(why)
        return claim
    if info is None:
        raise ValueError("claim_output_folder: named run folders need info (n_patterns, window, modes)")
    base = os.path.join(out, run_folder_name(p, info, when))
    k = 1
    while True:
        folder = base if k == 1 else f"{base}_{k}"
        k += 1
        if is_run_folder(folder) and not p["overwrite_output"]:
            continue
        try:
            claim = claim_folder(folder, say)
        except FolderBusyError:
            continue
        if is_run_folder(folder) and not p["overwrite_output"]:  # a run ended there meanwhile
            claim.release(keep_files=True)
            continue
        return claim


def resolve_output_folder(p: dict, info: dict, when: datetime.datetime | None = None) -> str:
    """Create and return the run folder ("" when ``output_folder`` is empty), without claiming it.

    Plain mode returns ``output_folder`` (after :func:`check_plain_folder`);
    named mode returns ``output_folder/<run_folder_name>``, with ``_2``,
    ``_3``, ... appended while that folder holds another run (unless
    ``overwrite_output``).  pypty's runs use :func:`claim_output_folder`,
    which is race-free; this function is kept for callers that only want the
    name.
    """
    out = p["output_folder"]
    if not out:
        return ""
    if not naming_active(p):
        check_plain_folder(p)
        os.makedirs(out, exist_ok=True)
        return out
    base = os.path.join(out, run_folder_name(p, info, when))
    folder, k = base, 1
    while is_run_folder(folder) and not p["overwrite_output"]:
        k += 1
        folder = f"{base}_{k}"
    os.makedirs(folder, exist_ok=True)
    return folder
