"""Plots of a clock estimate with its error bars, shared by `chronotick-sim --plot` and
`chronotick-node report --plot`.

matplotlib is an optional dependency (`pip install 'chronotick[plot]'`): it loads only when a
plot is asked for, with the Agg backend (files, no display), and its absence is a clear
message, never a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

INSTALL_HINT = "pip install 'chronotick[plot]'"


class PlotUnavailable(RuntimeError):
    """matplotlib cannot be loaded."""


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or PlotUnavailable saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(f"--plot needs matplotlib: {INSTALL_HINT}") from None
    return plt


def interval_bands(
    ax: Any,
    t: ArrayLike,
    center: ArrayLike,
    sigma: ArrayLike,
    bound: ArrayLike,
    *,
    sigma_k: float = 1.0,
    label: str = "",
) -> None:
    """center ± k·σ as a shaded band and center ± bound as dashed edges (over a faint fill):
    the two error figures every ChronoTick model publishes, drawn the same way everywhere."""
    import numpy as np

    c = np.asarray(center, dtype=float)
    s = sigma_k * np.asarray(sigma, dtype=float)
    b = np.asarray(bound, dtype=float)
    prefix = f"{label} " if label else ""
    k = "" if sigma_k == 1 else f"{sigma_k:g}"
    ax.fill_between(t, c - b, c + b, color="0.5", alpha=0.12, lw=0)
    ax.plot(t, c + b, "k--", lw=0.6, label=f"{prefix}±bound")
    ax.plot(t, c - b, "k--", lw=0.6)
    ax.fill_between(t, c - s, c + s, alpha=0.3, label=f"{prefix}±{k}σ")


def save(fig: Any, path: str) -> None:
    """Lay out, write (the format follows the file name) and free the figure."""
    plt = pyplot()
    try:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
