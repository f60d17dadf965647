"""Import weights from other code bases into compiled specs (``archdsl import-weights``).

``FORMATS`` maps a ``--from`` name to its converter ``fn(official_state_dict, model) -> state_dict``;
a converter may take ``report: dict`` (keyword) to return notes (``dropped_classifier``, ``initialised``)
that ``archdsl import-weights`` prints.
"""
from __future__ import annotations

from archdsl.convert.checkpoint import read_checkpoint
from archdsl.convert.mlla import convert_mlla_state_dict, load_checkpoint, save_state_dict
from archdsl.convert.timm import convert_timm_state_dict

FORMATS = {"mlla": convert_mlla_state_dict, "timm": convert_timm_state_dict}

__all__ = ["FORMATS", "convert_mlla_state_dict", "convert_timm_state_dict", "load_checkpoint", "read_checkpoint",
           "save_state_dict"]
