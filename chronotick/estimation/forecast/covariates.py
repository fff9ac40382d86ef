"""What the host says about the conditions its oscillator runs in: temperature and CPU load.

A quartz crystal's frequency follows its temperature (a parabola around the turnover point),
and CPU load moves the temperature faster than the thermal sensors far from the crystal show.
These readings are the inputs a forecaster can learn the frequency's response from; they are
optional everywhere: a host without sensors gives readings with `None` in them, and every
forecaster must work (if less well) without them.

Pure values and arithmetic; the daemon's sensor reader (`chronotick.daemon.sensors`) and the
simulator produce readings, and the forecasters consume them.
"""

from __future__ import annotations

import collections
import dataclasses
import math

#: the covariates a reading may carry, in the order forecasters see them
NAMES: tuple[str, ...] = ("temperature_c", "cpu_load")


@dataclasses.dataclass(frozen=True)
class CovariateReading:
    """Conditions at base-clock instant `at_ns` (the same clock samples are stamped with).

    `temperature_c`: the sensor nearest the crystal that the host offers (°C);
    `cpu_load`: busy share of all CPUs since the previous reading, 0..1. `None`: unknown.
    """

    at_ns: int
    temperature_c: float | None = None
    cpu_load: float | None = None

    def __post_init__(self) -> None:
        if self.temperature_c is not None and not (
            math.isfinite(self.temperature_c) and -60.0 <= self.temperature_c <= 150.0
        ):
            raise ValueError(f"temperature_c must be in [-60, 150] °C, not {self.temperature_c}")
        if self.cpu_load is not None and not (
            math.isfinite(self.cpu_load) and 0.0 <= self.cpu_load <= 1.0
        ):
            raise ValueError(f"cpu_load must be in [0, 1], not {self.cpu_load}")

    def values(self) -> tuple[float | None, ...]:
        return (self.temperature_c, self.cpu_load)


class CovariateHistory:
    """Recent readings on a regular grid, bounded in size.

    Readings come as often as a sensor is read (the simulator: every event); forecasters need
    the conditions between measurements, integrated over time, so readings are averaged into
    cells of `cell_s` seconds and only the newest `max_cells` are kept. A covariate that a
    cell has no reading of keeps its newest earlier value (conditions hold until told
    otherwise), and a cell lasts until the next one starts.
    """

    def __init__(self, cell_s: float = 10.0, max_cells: int = 4096) -> None:
        if not (cell_s > 0 and max_cells >= 2):
            raise ValueError("a covariate history needs cell_s > 0 and max_cells >= 2")
        self.cell_ns = int(cell_s * 1e9)
        #: (cell index, sums per covariate, counts per covariate)
        self._cells: collections.deque[tuple[int, list[float], list[int]]] = collections.deque(
            maxlen=max_cells
        )
        #: per covariate: whether it was ever read (saves looking back for one never read)
        self._ever = [False] * len(NAMES)

    def __len__(self) -> int:
        return len(self._cells)

    def clear(self) -> None:
        self._cells.clear()
        self._ever = [False] * len(NAMES)

    def add(self, reading: CovariateReading) -> None:
        index = reading.at_ns // self.cell_ns
        if self._cells and index < self._cells[-1][0]:
            return  # older than what is kept: conditions are not rewritten
        if not self._cells or index > self._cells[-1][0]:
            self._cells.append((index, [0.0] * len(NAMES), [0] * len(NAMES)))
        _index, sums, counts = self._cells[-1]
        for k, value in enumerate(reading.values()):
            if value is not None:
                sums[k] += value
                counts[k] += 1
                self._ever[k] = True

    def available(self) -> tuple[bool, ...]:
        """Per covariate: whether any kept cell has a value."""
        cells = list(self._cells)  # one C-level copy: readings may arrive on another thread
        return tuple(any(c[2][k] for c in cells) for k in range(len(NAMES)))

    def grid(self, since_ns: int | None = None) -> tuple[list[int], list[list[float | None]]]:
        """(cell start times in ns, per covariate the cell means, a gap carrying the value
        before it forward; None before a covariate's first reading).

        Each cell's values hold until the next cell starts (conditions hold until told
        otherwise). `since_ns`: only the cells that still held at that instant and after.
        """
        cells = list(self._cells)
        last: list[float | None] = [None] * len(NAMES)
        if since_ns is not None and cells:
            first = len(cells) - 1
            while first > 0 and cells[first][0] * self.cell_ns > since_ns:
                first -= 1
            first = max(first, 0)
            # what held when the slice begins: the newest reading of each covariate before it
            for k in range(len(NAMES)):
                if cells[first][2][k] or not self._ever[k]:
                    continue  # read in the first cell itself, or never read at all
                for _index, sums, counts in reversed(cells[:first]):
                    if counts[k]:
                        last[k] = sums[k] / counts[k]
                        break
            cells = cells[first:]
        starts = [index * self.cell_ns for index, _s, _c in cells]
        series: list[list[float | None]] = [[] for _ in NAMES]
        for _index, sums, counts in cells:
            for k in range(len(NAMES)):
                if counts[k]:
                    last[k] = sums[k] / counts[k]
                series[k].append(last[k])
        return starts, series

    def copy(self) -> CovariateHistory:
        """An independent copy (a training job on another thread reads it while new readings
        arrive)."""
        other = CovariateHistory.__new__(CovariateHistory)
        other.cell_ns = self.cell_ns
        other._ever = list(self._ever)
        cells = list(self._cells)  # one C-level copy: readings may arrive on another thread
        other._cells = collections.deque(
            ((i, list(s), list(c)) for i, s, c in cells), maxlen=self._cells.maxlen
        )
        return other
