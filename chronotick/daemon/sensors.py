"""The daemon's reader of host covariates: a temperature near the crystal and the CPU load.

Forecasters learn how the oscillator's frequency follows its conditions
(`chronotick.estimation.forecast.covariates`); this module is where those conditions come
from on a real host. Both are best effort: hosts differ in what sysfs offers (VMs and
containers often offer nothing), files vanish when drivers reload, and a sensor may report
garbage. None of that may stop the clock loop, so `HostSensors.read` never raises: what it
cannot read is `None` in the reading, and each distinct problem is logged once, not on every
tick.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from chronotick.estimation.forecast.covariates import CovariateReading

log = logging.getLogger(__name__)

#: the range `CovariateReading` accepts; sensors outside it are broken, not hot
MIN_C, MAX_C = -60.0, 150.0

#: hwmon drivers that measure the CPU die (the crystal sits on the board next to it, and CPU
#: heat is what moves the board's temperature fastest)
_CPU_HWMON = frozenset(
    {"coretemp", "k10temp", "zenpower", "k8temp", "via_cputemp", "cpu_thermal", "cpu-thermal"}
)
#: hwmon labels naming the whole package rather than one core or die
_PACKAGE_LABEL = re.compile(r"^(package id \d+|tctl|tdie|cpu|cpu temp(erature)?)$", re.I)
#: thermal zone types that are the CPU package (x86) or the SoC's CPU cluster (ARM boards)
_PACKAGE_ZONE = frozenset({"x86_pkg_temp"})
_CPU_ZONE = re.compile(r"cpu|soc|package", re.I)
#: sensors on other devices: their temperature follows that device's own work (a GPU, a disk,
#: a radio, a battery charging), not the board's, so they would teach forecasters noise
_UNRELATED = re.compile(
    r"nvme|drivetemp|amdgpu|radeon|nouveau|gpu|iwlwifi|ath\d+k|mt7\d+|wifi|bat|battery|charger",
    re.I,
)


@dataclass(frozen=True)
class _Candidate:
    path: Path
    kind: str  # "hwmon <name>[, <label>]" or "thermal zone <type>"
    rank: int  # higher: more likely near the CPU/crystal


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="strict").strip()
    except (OSError, ValueError):
        return None


def _natural(path: Path) -> tuple[tuple[int, int | str], ...]:
    """hwmon2 before hwmon10, so ties go to the lowest-numbered device."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"(\d+)", str(path))
        if part
    )


def _zone_rank(zone_type: str) -> int:
    if zone_type in _PACKAGE_ZONE:
        return 3
    if _CPU_ZONE.search(zone_type):
        return 2
    return 0 if _UNRELATED.search(zone_type) else 1


def _hwmon_rank(name: str, label: str | None) -> int:
    cpu = name in _CPU_HWMON or "cpu" in name.lower()
    if cpu and label is not None and _PACKAGE_LABEL.match(label):
        return 3
    if cpu:
        return 2
    return 0 if _UNRELATED.search(name) else 1


def _candidates(root: Path) -> list[_Candidate]:
    """Every temperature sensor under `root`'s sysfs that is plausibly about the board, best
    first (package, then CPU cores, then board/ACPI zones)."""
    found: list[_Candidate] = []
    for zone in sorted(root.glob("sys/class/thermal/thermal_zone*"), key=_natural):
        path = zone / "temp"
        if path.is_file():
            zone_type = _read_text(zone / "type") or "?"
            found.append(_Candidate(path, f"thermal zone {zone_type}", _zone_rank(zone_type)))
    for hwmon in sorted(root.glob("sys/class/hwmon/hwmon*"), key=_natural):
        name = _read_text(hwmon / "name") or "?"
        for path in sorted(hwmon.glob("temp*_input"), key=_natural):
            label = _read_text(path.with_name(path.name.replace("_input", "_label")))
            kind = f"hwmon {name}" + (f", {label}" if label else "")
            found.append(_Candidate(path, kind, _hwmon_rank(name, label)))
    found = [c for c in found if c.rank > 0]
    # stable sort: within a rank, discovery order (thermal zones, then hwmon, by number)
    found.sort(key=lambda c: -c.rank)
    return found


def _parse_millidegrees(text: str | None) -> float | str:
    """°C from a sysfs temperature file's text, or the name of what is wrong with it."""
    if text is None:
        return "unreadable"
    try:
        celsius = int(text) / 1000.0
    except ValueError:
        return "garbage"
    if not (math.isfinite(celsius) and MIN_C <= celsius <= MAX_C):
        return "out of range"
    return celsius


def _parse_stat(text: str | None) -> tuple[int, int] | None:
    """(busy, total) jiffies from /proc/stat's aggregate `cpu` line.

    Fields: user nice system idle iowait irq softirq steal [guest guest_nice]. guest and
    guest_nice are already counted in user and nice, so only the first eight are summed.
    Busy is everything but idle and iowait (a CPU waiting for a disk does not heat up).
    """
    if text is None:
        return None
    first = text.split("\n", 1)[0].split()
    if len(first) < 5 or first[0] != "cpu":
        return None
    try:
        fields = [int(x) for x in first[1:9]]
    except ValueError:
        return None
    if any(f < 0 for f in fields):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields)
    return total - idle, total


class HostSensors:
    """Reads `CovariateReading`s from a Linux host's sysfs and procfs.

    `root` is where `sys/` and `proc/` are looked for (tests point it at a fake tree).
    The temperature sensor is chosen once, here, so that a forecaster's history is one
    sensor's series and not a mix of whichever happened to answer; `temperature_path` names
    the sysfs file to use instead of choosing.
    """

    def __init__(self, root: Path = Path("/"), temperature_path: Path | None = None) -> None:
        self.root = root
        self._stat_path = root / "proc" / "stat"
        self._previous: tuple[int, int] | None = None
        self._logged: set[str] = set()
        self._sensor: _Candidate | None
        if temperature_path is not None:
            self._sensor = _Candidate(temperature_path, "explicit", 0)
        else:
            self._sensor = self._choose(_candidates(root))
            if self._sensor is None:
                log.info(
                    "no temperature sensor found under %s; forecasters run without temperature",
                    root / "sys" / "class",
                )

    @staticmethod
    def _choose(candidates: list[_Candidate]) -> _Candidate | None:
        """The best candidate that gives a sane value now; failing that, the best one (a
        sensor that is not ready at start may be later, and a reading's None says so)."""
        for candidate in candidates:
            if isinstance(_parse_millidegrees(_read_text(candidate.path)), float):
                return candidate
        return candidates[0] if candidates else None

    @property
    def description(self) -> str:
        """Which temperature sensor readings come from, for the daemon's start-up log."""
        if self._sensor is None:
            return f"no temperature sensor (looked under {self.root / 'sys' / 'class'})"
        return f"{self._sensor.path} ({self._sensor.kind})"

    def read(self, at_ns: int) -> CovariateReading:
        """The conditions now, stamped `at_ns`; unknown values are None. Never raises."""
        try:
            temperature = self._temperature()
        except Exception as exc:  # a sensor must never stop the clock loop
            self._once("temperature-error", "temperature reading failed: %r", exc)
            temperature = None
        try:
            load = self._cpu_load()
        except Exception as exc:
            self._once("load-error", "CPU load reading failed: %r", exc)
            load = None
        return CovariateReading(at_ns, temperature_c=temperature, cpu_load=load)

    def _once(self, key: str, message: str, *args: object) -> None:
        """Warn about a problem the first time it happens; a sensor that stays broken would
        otherwise write the same line every second."""
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message + " (logged once)", *args)

    def _temperature(self) -> float | None:
        if self._sensor is None:
            return None
        value = _parse_millidegrees(_read_text(self._sensor.path))
        if isinstance(value, str):
            self._once(
                f"temperature {value}",
                "temperature sensor %s is %s; readings carry no temperature while it is",
                self._sensor.path,
                value,
            )
            return None
        return value

    def _cpu_load(self) -> float | None:
        counters = _parse_stat(_read_text(self._stat_path))
        if counters is None:
            self._once(
                "stat unreadable", "cannot read CPU counters from %s; no CPU load", self._stat_path
            )
            return None
        previous, self._previous = self._previous, counters
        if previous is None:
            return None  # a share needs an interval: the first reading only sets the start
        busy = counters[0] - previous[0]
        total = counters[1] - previous[1]
        if busy < 0 or total < busy or total <= 0:
            # counters reset (a CPU went offline, a container's view changed) or no time
            # passed: this interval says nothing; the next one starts from here
            if total < 0 or busy < 0:
                self._once("stat backwards", "CPU counters in %s went backwards", self._stat_path)
            return None
        return min(1.0, max(0.0, busy / total))
