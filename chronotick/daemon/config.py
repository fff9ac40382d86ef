"""The daemon's configuration: defaults, a TOML file, then flags, validated in one place.

Every key of the file is a field of `DaemonConfig` with the same name; unknown keys and values
of the wrong type or range are refused with a message that names them, before anything starts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import re
import tomllib
from typing import Any

from chronotick.clockbound_segment import DEFAULT_PATH as CLOCKBOUND_DEFAULT_PATH
from chronotick.clocks import NS_PER_S, SimulatedClockParams
from chronotick.estimation.estimator import EstimatorConfig
from chronotick.estimation.forecast.foundation import KNOWN_MODELS
from chronotick.estimation.predictor import (
    DEFAULT_PREDICTOR,
    DEFAULT_ZERO_SHOT_MODEL,
    PREDICTOR_NAMES,
)
from chronotick.ntp.poll import PollPolicy
from chronotick.ntp.query import ServerAddress
from chronotick.shm import default_name, validate_name

DEFAULT_SERVERS = ("0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org", "3.pool.ntp.org")
LOG_LEVELS = ("debug", "info", "warning", "error")
#: a host name or an IPv4 address (IPv6 ones come in brackets)
_HOST_RE = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z")


class ConfigError(ValueError):
    """A configuration that cannot run; the message says which key and why."""


@dataclasses.dataclass(frozen=True)
class DaemonConfig:
    servers: tuple[str, ...] = DEFAULT_SERVERS
    min_poll_s: float = 64.0
    max_poll_s: float = 1024.0
    burst_size: int = 4
    burst_spacing_s: float = 2.0
    warmup_polls: int = 4
    warmup_interval_s: float = 2.0
    timeout_s: float = 1.0
    #: empty: the default segment `chronotick`, or `chronotick-NODE` when node_id is set
    shm_name: str = ""
    #: the directory of the segment (a tmpfs); empty: $CHRONOTICK_SHM_DIR, else /dev/shm
    shm_dir: str = ""
    node_id: str = ""
    log_level: str = "info"
    publish_rate_hz: float = 10.0
    #: readers refuse data older than this (the daemon hung or died)
    void_after_s: float = 10.0
    #: the frequency error the bound allows between measurements
    drift_tolerance_ppm: float = 5.0
    max_samples: int = 64
    #: simulated base clock (tests, demos): offset_ms, drift_ppm, wander_ppm_per_sqrt_s, seed
    simulated_clock: tuple[tuple[str, float], ...] = ()
    #: also write an AWS ClockBound (layout 2) segment at this path; empty: do not
    clockbound_path: str = ""
    #: HOST:PORT of the Prometheus endpoint (port 0: any free port); empty: no endpoint
    metrics_address: str = ""
    #: what the published model comes from: regression, ml or fused (docs/benchmarks.md,
    #: "Forecasters", says where each stands)
    predictor: str = DEFAULT_PREDICTOR
    #: the sysfs file of the temperature the forecasters learn from (millidegrees C); empty:
    #: the CPU package sensor, found by itself
    temperature_sensor: str = ""
    #: the pretrained long-horizon model of ml and fused (fracast ships its weights; the
    #: others need theirs on disk, docs/operations.md); empty: none
    zero_shot_model: str = DEFAULT_ZERO_SHOT_MODEL

    def __post_init__(self) -> None:
        if not self.servers:
            raise ConfigError("servers: at least one NTP server is needed")
        for server in self.servers:
            try:
                ServerAddress.parse(server)
            except ValueError as exc:
                raise ConfigError(f"servers: {exc}") from None
        _check_range("drift_tolerance_ppm", self.drift_tolerance_ppm, 0.001, 1000.0)
        try:
            self.poll_policy()
            self.estimator_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.shm_name:
            try:
                validate_name(self.shm_name)
            except ValueError as exc:
                raise ConfigError(f"shm_name: {exc}") from None
        if self.shm_dir and not os.path.isabs(self.shm_dir):
            raise ConfigError(f"shm_dir {self.shm_dir!r}: must be an absolute path")
        if self.node_id:
            try:
                validate_name(self.node_id)
            except ValueError:
                raise ConfigError(
                    f"node_id {self.node_id!r}: use letters, digits, '.', '_' or '-'"
                ) from None
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        _check_range("publish_rate_hz", self.publish_rate_hz, 0.1, 1000.0)
        if not 4 <= self.max_samples <= 1024:
            raise ConfigError(f"max_samples must be between 4 and 1024, got {self.max_samples}")
        _check_range("void_after_s", self.void_after_s, 0.5, 3600.0)
        if self.void_after_s * self.publish_rate_hz < 2:
            raise ConfigError("void_after_s must cover at least two publish intervals")
        if self.simulated_clock:
            self.clock_params(0)
        if self.clockbound_path:
            path = self.clockbound_path
            if not path.startswith("/") or path.endswith("/") or "\0" in path:
                raise ConfigError(
                    f"clockbound_path {path!r}: give an absolute file path "
                    f"(ClockBound's clients read {CLOCKBOUND_DEFAULT_PATH})"
                )
            if self.simulated_clock:
                raise ConfigError(
                    "clockbound_path: the ClockBound segment bounds the system clock, "
                    "which a simulated_clock daemon does not measure"
                )
        self.metrics_listen()
        if self.predictor not in PREDICTOR_NAMES:
            raise ConfigError(
                f"predictor must be one of {', '.join(PREDICTOR_NAMES)}, not {self.predictor!r}"
            )
        if self.zero_shot_model and self.zero_shot_model not in KNOWN_MODELS:
            raise ConfigError(
                f"zero_shot_model must be one of {', '.join(KNOWN_MODELS)} or empty, "
                f"not {self.zero_shot_model!r}"
            )
        if self.temperature_sensor and not os.path.isabs(self.temperature_sensor):
            raise ConfigError(
                f"temperature_sensor {self.temperature_sensor!r}: must be an absolute path"
            )

    @property
    def segment_name(self) -> str:
        return self.shm_name or default_name(self.node_id or None)

    @property
    def publish_interval_ns(self) -> int:
        return int(NS_PER_S / self.publish_rate_hz)

    @property
    def trusted_for_ns(self) -> int:
        """Readers call SYNCHRONIZED data older than this FREE_RUNNING (a missed publish or
        two is no reason to)."""
        return max(NS_PER_S, 10 * self.publish_interval_ns)

    def poll_policy(self) -> PollPolicy:
        return PollPolicy(
            min_poll_s=self.min_poll_s,
            max_poll_s=self.max_poll_s,
            burst_size=self.burst_size,
            burst_spacing_s=self.burst_spacing_s,
            warmup_polls=self.warmup_polls,
            warmup_interval_s=self.warmup_interval_s,
            timeout_s=self.timeout_s,
        )

    def estimator_config(self) -> EstimatorConfig:
        return EstimatorConfig(
            max_samples=self.max_samples, drift_tolerance_ppb=self.drift_tolerance_ppm * 1000.0
        )

    def clock_params(self, epoch_ns: int) -> SimulatedClockParams | None:
        if not self.simulated_clock:
            return None
        raw = dict(self.simulated_clock)
        known = {"offset_ms", "drift_ppm", "wander_ppm_per_sqrt_s", "seed"}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(
                f"simulated_clock: unknown keys {sorted(unknown)}; known: {sorted(known)}"
            )
        for key in ("offset_ms", "drift_ppm", "wander_ppm_per_sqrt_s"):
            value = raw.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"simulated_clock.{key} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"simulated_clock.{key} must be finite, got {value!r}")
        seed = raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"simulated_clock.seed must be an integer, got {seed!r}")
        try:
            return SimulatedClockParams(
                offset_ns=round(float(raw.get("offset_ms", 0.0)) * 1e6),
                drift_ppm=float(raw.get("drift_ppm", 0.0)),
                epoch_ns=epoch_ns,
                wander_ppm_per_sqrt_s=float(raw.get("wander_ppm_per_sqrt_s", 0.0)),
                seed=seed,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"simulated_clock: {exc}") from None

    def metrics_listen(self) -> tuple[str, int] | None:
        """`metrics_address` as (host, port), None when there is no endpoint."""
        if not self.metrics_address:
            return None
        try:
            return parse_listen_address(self.metrics_address)
        except ValueError as exc:
            raise ConfigError(f"metrics_address: {exc}") from None

    @property
    def logging_level(self) -> int:
        return int(getattr(logging, self.log_level.upper()))


def parse_listen_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPV6]:PORT` to (host, port); port 0 asks for any free port.

    The port is required: a listener on a guessed default port would collide with whatever
    else the host runs there.
    """
    if text.startswith("["):
        end = text.find("]")
        host, rest = (text[1:end], text[end + 1 :]) if end > 0 else ("", "")
        if not rest.startswith(":") or not rest[1:]:
            raise ValueError(f"expected [IPV6]:PORT, got {text!r}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text:
            raise ValueError(f"expected HOST:PORT or [IPV6]:PORT, got {text!r}")
        if ":" in host:
            raise ValueError(f"put an IPv6 address in brackets: [{host}]:{port_text}")
        if not _HOST_RE.match(host):
            raise ValueError(f"expected HOST:PORT with a host name or address, got {text!r}")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"port must be 0-65535, got {port_text!r}")
    return host, int(port_text)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")


def coerce(name: str, expected: Any, value: Any) -> Any:
    """A value from TOML or a flag as the type of the field it sets (the node's config uses
    this too), or a ConfigError naming the key."""
    if expected == "tuple[str, ...]":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return tuple(value)
    if expected == "tuple[tuple[str, float], ...]":
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table, got {value!r}")
        return tuple(sorted(value.items()))
    if expected == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        return float(value)
    if expected == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return value
    if expected == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if expected == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return value
    raise AssertionError(f"unhandled config type {expected}")


def build_config(file_values: dict[str, Any], overrides: dict[str, Any]) -> DaemonConfig:
    """Defaults, then the file's values, then the flags' (`None` means not given)."""
    fields = {f.name: f.type for f in dataclasses.fields(DaemonConfig)}
    unknown = sorted(set(file_values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown configuration keys: {', '.join(unknown)} (known: {', '.join(sorted(fields))})"
        )
    merged: dict[str, Any] = {}
    for source in (file_values, {k: v for k, v in overrides.items() if v is not None}):
        for key, value in source.items():
            merged[key] = coerce(key, fields[key], value)
    return DaemonConfig(**merged)


def load_file(path: str) -> dict[str, Any]:
    """A TOML config file as a dict; errors name the file and what is wrong."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
