"""HostSensors against fake sysfs/procfs trees: which sensor is chosen, and that whatever the
host offers (nothing, garbage, counters that reset) the reading says None instead of raising."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from chronotick.daemon.sensors import HostSensors
from chronotick.estimation.forecast.covariates import CovariateReading

NO_SENSOR = "no temperature sensor found"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _zone(root: Path, n: int, zone_type: str, millideg: str) -> Path:
    zone = root / "sys/class/thermal" / f"thermal_zone{n}"
    _write(zone / "type", zone_type + "\n")
    return _write(zone / "temp", millideg + "\n")


def _hwmon(root: Path, n: int, name: str, sensors: dict[int, tuple[str | None, str]]) -> Path:
    hwmon = root / "sys/class/hwmon" / f"hwmon{n}"
    _write(hwmon / "name", name + "\n")
    for index, (label, millideg) in sensors.items():
        _write(hwmon / f"temp{index}_input", millideg + "\n")
        if label is not None:
            _write(hwmon / f"temp{index}_label", label + "\n")
    return hwmon


def _stat(root: Path, user: int, nice: int, system: int, idle: int, iowait: int) -> None:
    # irq softirq steal guest guest_nice; guest is part of user and must not count twice
    _write(
        root / "proc/stat",
        f"cpu  {user} {nice} {system} {idle} {iowait} 0 0 0 7 0\n"
        f"cpu0 {user} {nice} {system} {idle} {iowait} 0 0 0 7 0\n"
        "intr 12345\nctxt 678\n",
    )


def test_package_zone_preferred_over_acpitz(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "acpitz", "27800")
    pkg = _zone(tmp_path, 1, "x86_pkg_temp", "48000")
    sensors = HostSensors(tmp_path)
    assert str(pkg) in sensors.description
    assert "x86_pkg_temp" in sensors.description
    assert sensors.read(1).temperature_c == pytest.approx(48.0)


def test_hwmon_package_label_preferred(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "acpitz", "27800")
    _hwmon(tmp_path, 0, "nvme", {1: ("Composite", "39850")})
    hwmon = _hwmon(tmp_path, 1, "coretemp", {2: ("Core 0", "44000"), 1: ("Package id 0", "51000")})
    sensors = HostSensors(tmp_path)
    assert sensors.description == f"{hwmon / 'temp1_input'} (hwmon coretemp, Package id 0)"
    assert sensors.read(1).temperature_c == pytest.approx(51.0)


def test_k10temp_tctl_over_ccd(tmp_path: Path) -> None:
    _hwmon(tmp_path, 2, "k10temp", {3: ("Tccd1", "40125"), 1: ("Tctl", "45250")})
    sensors = HostSensors(tmp_path)
    assert "Tctl" in sensors.description
    assert sensors.read(1).temperature_c == pytest.approx(45.25)


def test_cpu_hwmon_without_label_beats_acpitz(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "acpitz", "27800")
    _hwmon(tmp_path, 0, "cpu_thermal", {1: (None, "53500")})
    sensors = HostSensors(tmp_path)
    assert "hwmon cpu_thermal" in sensors.description
    assert sensors.read(1).temperature_c == pytest.approx(53.5)


def test_unreadable_best_sensor_falls_back_to_next(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "x86_pkg_temp", "nonsense")
    _zone(tmp_path, 1, "acpitz", "30000")
    sensors = HostSensors(tmp_path)
    assert "acpitz" in sensors.description
    assert sensors.read(1).temperature_c == pytest.approx(30.0)


def test_explicit_path_wins(tmp_path: Path) -> None:
    _zone(tmp_path, 0, "x86_pkg_temp", "48000")
    board = _write(tmp_path / "board_temp", "31500\n")
    sensors = HostSensors(tmp_path, temperature_path=board)
    assert str(board) in sensors.description
    assert sensors.read(1).temperature_c == pytest.approx(31.5)


def test_missing_tree_none_and_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chronotick.daemon.sensors")
    sensors = HostSensors(tmp_path)
    readings = [sensors.read(k) for k in range(5)]
    assert all(r.temperature_c is None and r.cpu_load is None for r in readings)
    lines = [r for r in caplog.records if NO_SENSOR in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "forecasters run without temperature" in lines[0].getMessage()
    assert "no temperature sensor" in sensors.description
    # the missing /proc/stat is one warning too, not five
    assert len([r for r in caplog.records if "CPU counters" in r.getMessage()]) == 1


@pytest.mark.parametrize("text", ["garbage", "", "45.5", "nan", "-70000", "151000", "255000"])
def test_garbage_or_out_of_range_is_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    pkg = _zone(tmp_path, 0, "x86_pkg_temp", "48000")
    sensors = HostSensors(tmp_path)
    assert sensors.read(1).temperature_c == pytest.approx(48.0)
    pkg.write_text(text + "\n")
    caplog.set_level(logging.WARNING, logger="chronotick.daemon.sensors")
    assert [sensors.read(k).temperature_c for k in range(2, 6)] == [None] * 4
    assert len([r for r in caplog.records if "temperature sensor" in r.getMessage()]) == 1
    pkg.write_text("-59000\n")  # recovers, and the range's edge is a value
    assert sensors.read(7).temperature_c == pytest.approx(-59.0)


def test_vanished_sensor_is_none(tmp_path: Path) -> None:
    pkg = _zone(tmp_path, 0, "x86_pkg_temp", "48000")
    sensors = HostSensors(tmp_path)
    pkg.unlink()
    assert sensors.read(1).temperature_c is None


def test_cpu_load_from_two_stat_contents(tmp_path: Path) -> None:
    _stat(tmp_path, user=100, nice=10, system=50, idle=800, iowait=40)
    sensors = HostSensors(tmp_path)
    assert sensors.read(1_000_000_000).cpu_load is None  # no interval yet
    # +60 user +0 nice +20 system = 80 busy; +100 idle +20 iowait: 80 / 200
    _stat(tmp_path, user=160, nice=10, system=70, idle=900, iowait=60)
    reading = sensors.read(2_000_000_000)
    assert isinstance(reading, CovariateReading)
    assert reading.at_ns == 2_000_000_000
    assert reading.cpu_load == pytest.approx(0.4)
    # fully busy interval
    _stat(tmp_path, user=260, nice=10, system=70, idle=900, iowait=60)
    assert sensors.read(3_000_000_000).cpu_load == pytest.approx(1.0)


def test_counters_backwards_or_still_is_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chronotick.daemon.sensors")
    _stat(tmp_path, user=500, nice=0, system=100, idle=2000, iowait=0)
    sensors = HostSensors(tmp_path)
    sensors.read(1)
    _stat(tmp_path, user=50, nice=0, system=10, idle=200, iowait=0)
    assert sensors.read(2).cpu_load is None
    assert any("backwards" in r.getMessage() for r in caplog.records)
    # nothing moved: no interval to take a share of
    assert sensors.read(3).cpu_load is None
    # and the reset became the new start
    _stat(tmp_path, user=75, nice=0, system=10, idle=275, iowait=0)
    assert sensors.read(4).cpu_load == pytest.approx(0.25)


def test_real_host() -> None:
    """This machine may have no sensors at all; only the reading's shape is asserted."""
    sensors = HostSensors()
    assert sensors.description
    first = sensors.read(time.monotonic_ns())
    time.sleep(0.05)
    second = sensors.read(time.monotonic_ns())
    for reading in (first, second):
        assert isinstance(reading, CovariateReading)
        assert reading.temperature_c is None or -60.0 <= reading.temperature_c <= 150.0
        assert reading.cpu_load is None or 0.0 <= reading.cpu_load <= 1.0
    assert first.cpu_load is None
