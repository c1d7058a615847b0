"""The generation scale α (``--gen-scale``): ``theory``, ``calibrated`` or a positive number
(docs/science.md §1)."""

from __future__ import annotations

import math

from ..errors import OptionError

ALPHA_MODES = ("theory", "calibrated")


def parse_gen_scale(text: str | float) -> str | float:
    """The generation scale α (``--gen-scale``): ``theory`` | ``calibrated`` | a positive
    number."""
    if isinstance(text, (int, float)):
        v = float(text)
    else:
        t = text.strip().lower()
        if t in ALPHA_MODES:
            return t
        try:
            v = float(t)
        except ValueError:
            raise OptionError(
                f"--gen-scale {text}: not theory, calibrated or a number",
                hint="e.g. --gen-scale theory or --gen-scale 0.5",
            ) from None
    if not (math.isfinite(v) and v > 0):
        raise OptionError(
            f"--gen-scale {text}: must be a positive number", hint="or theory / calibrated"
        )
    return v
