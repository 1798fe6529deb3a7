"""A quiet HiGHS: the first ``Highs()`` of a process prints a banner to the C-level stdout; hide it."""

from __future__ import annotations

import os
import sys
from typing import Any

_BANNER_SHOWN = False


def new_highs() -> Any:
    """A ``highspy.Highs`` instance with output switched off (and the start-up banner swallowed)."""
    import highspy

    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
        _BANNER_SHOWN = True
    h.setOptionValue("output_flag", False)
    return h
