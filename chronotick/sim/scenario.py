"""Scenario files: what to simulate, in TOML (documented in docs/simulator.md).

Every table and key is checked: an unknown key, a wrong type or an impossible value is refused
with the key's name, so a typo never silently simulates something else.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

BUILTIN_PACKAGE = "chronotick.sim.scenarios"


class ScenarioError(ValueError):
    """A scenario that cannot be simulated; the message names the key."""


@dataclasses.dataclass(frozen=True)
class ClockSpec:
    initial_offset_ms: float = 0.0
    frequency_ppm: float = 0.0
    wander_ppm_per_sqrt_s: float = 0.0
    #: frequency change = k·(T − turnover)², k in ppm/°C² (quartz: about −0.034)
    temperature_coefficient_ppm_per_c2: float = 0.0
    turnover_c: float = 25.0
    #: [[at_s, step_ms], ...]: the clock is stepped (someone ran `date`)
    steps: tuple[tuple[float, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class TemperatureSpec:
    profile: str = "constant"  # constant | sine | daily | steps
    mean_c: float = 25.0
    amplitude_c: float = 0.0
    period_s: float = 86_400.0
    #: "daily": a faster cycle on top of the daily one (an air conditioner)
    hvac_amplitude_c: float = 0.0
    hvac_period_s: float = 1_200.0
    #: "steps": [[at_s, temperature_c], ...]
    steps: tuple[tuple[float, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    name: str
    #: minimum round trip
    delay_ms: float = 0.1
    #: mean extra delay from queueing, per direction half of it (exponential)
    jitter_ms: float = 0.1
    #: one-way difference: forward takes delay/2 + asymmetry/2, back delay/2 − asymmetry/2
    asymmetry_ms: float = 0.0
    #: share of the queueing that happens on the way back (0.5: as much each way)
    return_queueing_fraction: float = 0.5
    #: probability that a packet (either way) is lost
    loss: float = 0.0
    #: a falseticker: the server's clock is off by this (and drifts by error_drift_ppm)
    error_ms: float = 0.0
    error_drift_ppm: float = 0.0
    #: delay spikes: probability per packet, and the mean extra delay of a spike
    spike_probability: float = 0.0
    spike_ms: float = 0.0
    #: [[start_s, end_s], ...]: the server does not answer
    outages: tuple[tuple[float, float], ...] = ()
    #: Kiss-o'-Death RATE to requests closer together than this (0: no limit)
    rate_limit_s: float = 0.0
    root_delay_ms: float = 0.0
    root_dispersion_ms: float = 0.01
    stratum: int = 1


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """The node's own settings (the daemon's flags of the same names)."""

    min_poll_s: float = 16.0
    max_poll_s: float = 1024.0
    burst_size: int = 4
    burst_spacing_s: float = 2.0
    timeout_s: float = 1.0
    drift_tolerance_ppm: float = 5.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    duration_s: float
    seed: int = 1
    #: fixed poll interval; absent: the node's poll policy decides
    poll_interval_s: float | None = None
    #: how often the predictions are scored against the truth
    score_interval_s: float = 2.0
    description: str = ""
    clock: ClockSpec = ClockSpec()
    temperature: TemperatureSpec = TemperatureSpec()
    servers: tuple[ServerSpec, ...] = ()
    node: NodeSpec = NodeSpec()

    def __post_init__(self) -> None:
        _positive("duration_s", self.duration_s, 1e6 * 86_400)
        _positive("score_interval_s", self.score_interval_s, 86_400)
        if self.poll_interval_s is not None:
            _positive("poll_interval_s", self.poll_interval_s, 36 * 3600)
            if self.poll_interval_s < 1.0:
                raise ScenarioError("poll_interval_s must be at least 1 s")
        if not self.servers:
            raise ScenarioError("a scenario needs at least one [[servers]] table")
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise ScenarioError(f"server names must be unique: {names}")
        if self.temperature.profile not in ("constant", "sine", "daily", "steps"):
            raise ScenarioError(
                f"temperature.profile must be constant, sine, daily or steps, "
                f"got {self.temperature.profile!r}"
            )
        for server in self.servers:
            for key in ("loss", "spike_probability"):
                value = getattr(server, key)
                if not 0.0 <= value < 1.0:
                    raise ScenarioError(f"servers.{server.name}.{key} must be in [0, 1)")
            if not 0.0 <= server.return_queueing_fraction <= 1.0:
                raise ScenarioError(
                    f"servers.{server.name}.return_queueing_fraction must be in [0, 1]"
                )
            for key in ("delay_ms", "jitter_ms", "spike_ms", "rate_limit_s", "root_delay_ms",
                        "root_dispersion_ms"):  # fmt: skip
                if getattr(server, key) < 0:
                    raise ScenarioError(f"servers.{server.name}.{key} must be >= 0")
            if abs(server.asymmetry_ms) > server.delay_ms:
                raise ScenarioError(
                    f"servers.{server.name}.asymmetry_ms must not exceed delay_ms "
                    "(a one-way delay cannot be negative)"
                )
            for start, end in server.outages:
                if not 0 <= start < end:
                    raise ScenarioError(f"servers.{server.name}.outages: [{start}, {end}]")

    @property
    def duration_ns(self) -> int:
        return int(self.duration_s * 1e9)


def _positive(name: str, value: float, limit: float) -> None:
    if not math.isfinite(value) or not 0 < value <= limit:
        raise ScenarioError(f"{name} must be a positive number up to {limit:g}, got {value}")


def _pairs(where: str, value: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v) for v in value
    ):
        raise ScenarioError(f"{where} must be a list of [number, number] pairs, got {value!r}")
    return tuple((float(a), float(b)) for a, b in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _build(cls: type[Any], where: str, raw: Any, extra: dict[str, Any] | None = None) -> Any:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where} must be a table, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ScenarioError(
            f"unknown keys in {where}: {', '.join(unknown)} (known: {', '.join(sorted(fields))})"
        )
    values: dict[str, Any] = dict(extra or {})
    for key, value in raw.items():
        kind = str(fields[key].type)
        label = f"{where}.{key}" if where != "scenario" else key
        if "tuple[tuple[float, float]" in kind:
            values[key] = _pairs(label, value)
        elif kind.startswith("float"):
            if not _is_number(value):
                raise ScenarioError(f"{label} must be a finite number, got {value!r}")
            values[key] = float(value)
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ScenarioError(f"{label} must be an integer, got {value!r}")
            values[key] = value
        elif kind == "str":
            if not isinstance(value, str):
                raise ScenarioError(f"{label} must be a string, got {value!r}")
            values[key] = value
        else:
            raise ScenarioError(f"{label} cannot be set here")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None


def parse(raw: dict[str, Any], origin: str = "<scenario>") -> Scenario:
    """A scenario from its TOML table; ScenarioError names what is wrong."""
    raw = dict(raw)
    clock = _build(ClockSpec, "clock", raw.pop("clock", {}))
    temperature = _build(TemperatureSpec, "temperature", raw.pop("temperature", {}))
    node = _build(NodeSpec, "node", raw.pop("node", {}))
    servers_raw = raw.pop("servers", [])
    if not isinstance(servers_raw, list):
        raise ScenarioError("servers must be an array of tables ([[servers]])")
    servers = []
    for index, server in enumerate(servers_raw):
        if not isinstance(server, dict) or not isinstance(server.get("name"), str):
            raise ScenarioError(f"servers[{index}] needs a name")
        servers.append(_build(ServerSpec, f"servers.{server['name']}", server))
    for required in ("name", "duration_s"):
        if required not in raw:
            raise ScenarioError(f"{origin}: {required} is required")
    return _build(  # type: ignore[no-any-return]
        Scenario,
        "scenario",
        raw,
        {"clock": clock, "temperature": temperature, "node": node, "servers": tuple(servers)},
    )


def builtin_names() -> list[str]:
    files = resources.files(BUILTIN_PACKAGE).iterdir()
    return sorted(f.name[: -len(".toml")] for f in files if f.name.endswith(".toml"))


def load(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a TOML file by path."""
    if name_or_path in builtin_names():
        text = resources.files(BUILTIN_PACKAGE).joinpath(f"{name_or_path}.toml").read_text()
        origin = f"built-in scenario {name_or_path}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ScenarioError(
                f"{name_or_path!r} is neither a built-in scenario ({', '.join(builtin_names())}) "
                "nor a file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"cannot read {path}: {exc}") from None
        origin = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin} is not valid TOML: {exc}") from None
    return parse(raw, origin)
