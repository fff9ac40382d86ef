"""Text for people: durations in the unit their magnitude calls for, and aligned columns.

Integer nanoseconds are right for code and wrong for eyes: 12345 ns reads better as 12.3 µs,
and 0.0123 s better as 12.3 ms. Three significant figures are what a clock's error deserves
(a σ is itself only known to a few per cent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_UNITS = ((1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns"))


def unit_for(magnitude_ns: float) -> tuple[float, str]:
    """The unit (ns per unit, name) that shows `magnitude_ns` with 1-3 digits before the
    point; seconds beyond."""
    magnitude = abs(magnitude_ns)
    for scale, name in _UNITS:
        if magnitude >= scale * 0.9995:  # 999.96 µs rounds to 1.00 ms, not 1000 µs
            return scale, name
    return 1.0, "ns"


def format_ns(value_ns: float | None, signed: bool = False) -> str:
    """12345 → "12.3 µs"; `signed` puts + on positive values (offsets); None → "-"."""
    if value_ns is None or not math.isfinite(value_ns):
        return "-"
    scale, unit = unit_for(value_ns)
    value = value_ns / scale
    if unit == "ns":
        digits = 0
    else:
        magnitude = abs(value)
        digits = 2 if round(magnitude, 2) < 10 else 1 if round(magnitude, 1) < 100 else 0
    sign = "+" if signed else ""
    return f"{value:{sign}.{digits}f} {unit}"


def format_seconds(value_s: float | None) -> str:
    """An age or interval: "0.4 s", "12 s", "3m05s", "2h05m", "3d04h"; None → "-"."""
    if value_s is None or not math.isfinite(value_s):
        return "-"
    if value_s < 0:
        return "-" + format_seconds(-value_s)
    if value_s < 9.95:
        return f"{value_s:.1f} s"
    whole = round(value_s)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def format_ppm(drift_ppb: float) -> str:
    """A frequency error: "+1.234 ppm" (ppb inside, ppm is what chrony users read)."""
    if not math.isfinite(drift_ppb):
        return "-"
    return f"{drift_ppb / 1000.0:+.3f} ppm"


def columns(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Lines of a table: the first `left` columns left-aligned (names), the rest right-aligned
    (numbers, so that their units line up); no trailing spaces."""
    cells = [list(header), *(list(r) for r in rows)]
    count = len(header)
    if any(len(r) != count for r in cells):
        raise ValueError("every row needs one cell per column")
    widths = [max(len(r[i]) for r in cells) for i in range(count)]
    return [
        "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in
                  enumerate(zip(r, widths, strict=True))).rstrip()
        for r in cells
    ]  # fmt: skip
