"""``geoseg change``: compare two dates of one area (finished run folders or scenes).

from geoseg.change import ChangeConfig, run_change
summary = run_change(ChangeConfig(before=..., after=..., out=...))
"""

from geoseg.change.config import DEFAULT_CHANGE_MMU_M2, ChangeConfig
from geoseg.change.core import ChangeSummary, run_change
from geoseg.change.errors import ChangeInputError

__all__ = ["DEFAULT_CHANGE_MMU_M2", "ChangeConfig", "ChangeInputError", "ChangeSummary", "run_change"]
