"""``pypty.provenance``: where each refined component came from; see :mod:`pypty.output.provenance`."""
from .output.provenance import (COMPONENT_NAMES, birth_entry, component_name, export_history_json, initial_history,
                                load_history, new_uid, run_entry, with_run)

__all__ = ["COMPONENT_NAMES", "component_name", "new_uid", "birth_entry", "initial_history", "run_entry",
           "with_run", "load_history", "export_history_json"]
