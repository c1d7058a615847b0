"""matplotlib Figure builders (Agg backend, no pyplot global state).

Every function returns a ``matplotlib.figure.Figure``; the report stage saves it. Each
command has its own section.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402


def new_figure(width: float = 6.4, height: float = 4.8, **kw: Any) -> Figure:
    return Figure(figsize=(width, height), layout="constrained", **kw)


# --- randomness (section owned by the randomness work) -----------------------------------

# <<randomness-plots>>

# --- reconstruct (section owned by the reconstruct work) ---------------------------------

# <<reconstruct-plots>>

# --- shadow-train (section owned by the shadow-train work) -------------------------------

# <<shadow-train-plots>>
