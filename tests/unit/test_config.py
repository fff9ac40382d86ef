"""The daemon's configuration: defaults, a TOML file, overrides, and refusing what cannot run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from chronotick.daemon.config import (
    DEFAULT_SERVERS,
    ConfigError,
    DaemonConfig,
    build_config,
    load_file,
)
from chronotick.estimation.estimator import EstimatorConfig
from chronotick.ntp.poll import PollPolicy


def test_defaults_are_valid_and_polite() -> None:
    config = build_config({}, {})
    assert config == DaemonConfig()
    assert config.servers == DEFAULT_SERVERS
    assert config.poll_policy() == PollPolicy()
    assert config.min_poll_s >= 64.0
    assert isinstance(config.estimator_config(), EstimatorConfig)
    assert config.estimator_config().drift_tolerance_ppb == 5_000.0
    assert config.clock_params(0) is None
    assert config.publish_interval_ns == 100_000_000


def test_file_values_then_overrides() -> None:
    file_values = {"min_poll_s": 32, "max_poll_s": 512.0, "servers": ["a.example"], "node_id": "n1"}
    overrides: dict[str, Any] = {"min_poll_s": 128.0, "max_poll_s": None, "log_level": "debug"}
    config = build_config(file_values, overrides)
    assert config.min_poll_s == 128.0  # the flag wins over the file
    assert config.max_poll_s == 512.0  # None means the flag was not given: the file's value
    assert config.servers == ("a.example",)
    assert config.node_id == "n1"
    assert config.log_level == "debug"
    assert config.burst_size == DaemonConfig().burst_size  # the default where nobody spoke
    assert isinstance(config.min_poll_s, float)


def test_overrides_alone() -> None:
    config = build_config({}, {"servers": ["x.example:1123", "[::1]:123"], "timeout_s": None})
    assert config.servers == ("x.example:1123", "[::1]:123")
    assert config.timeout_s == DaemonConfig().timeout_s


def test_a_single_server_string_is_a_list_of_one() -> None:
    assert build_config({"servers": "ntp.example"}, {}).servers == ("ntp.example",)


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError) as error:
        build_config({"min_pol_s": 64, "colour": "blue", "min_poll_s": 64}, {})
    message = str(error.value)
    assert "min_pol_s" in message and "colour" in message
    assert "min_poll_s" in message  # the known keys are listed to help


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("min_poll_s", "64"),
        ("publish_rate_hz", "fast"),
        ("min_poll_s", True),
        ("burst_size", True),
        ("burst_size", 4.0),
        ("warmup_polls", "4"),
        ("max_samples", 64.5),
        ("servers", 5),
        ("servers", ["a.example", 7]),
        ("servers", {"a": 1}),
        ("log_level", 3),
        ("shm_name", ["x"]),
        ("simulated_clock", "fast"),
        ("simulated_clock", [1, 2]),
    ],
)
def test_wrong_types_are_refused_with_the_key(key: str, value: object) -> None:
    for file_values, overrides in (({key: value}, {}), ({}, {key: value})):
        with pytest.raises(ConfigError, match=key):
            build_config(file_values, overrides)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"min_poll_s": 0}, "min_poll_s"),
        ({"min_poll_s": 0.5}, "min_poll_s"),
        ({"min_poll_s": 128, "max_poll_s": 64}, "max_poll_s"),
        ({"min_poll_s": math.nan}, "min_poll_s"),
        ({"max_poll_s": math.inf}, "max_poll_s"),
        ({"burst_size": 0}, "burst_size"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"publish_rate_hz": 0}, "publish_rate_hz"),
        ({"publish_rate_hz": math.nan}, "publish_rate_hz"),
        ({"publish_rate_hz": math.inf}, "publish_rate_hz"),
        ({"void_after_s": 0.1}, "void_after_s"),
        ({"void_after_s": 1.0, "publish_rate_hz": 1.0}, "void_after_s"),
        ({"drift_tolerance_ppm": 5_000.0}, "drift_tolerance_ppm"),
        ({"max_samples": 2}, "max_samples"),
        ({"servers": ["a:99999"]}, "servers"),
        ({"servers": ["a:0"]}, "servers"),
        ({"servers": ["a:ntp"]}, "servers"),
        ({"servers": ["[::1"]}, "servers"),
        ({"servers": ["[::1]x"]}, "servers"),
        ({"servers": [":123"]}, "servers"),
        ({"servers": ["a:b:c"]}, "servers"),
        ({"servers": ["   "]}, "servers"),
        ({"servers": []}, "servers"),
        ({"shm_name": "a/b"}, "shm_name"),
        ({"shm_name": "../etc"}, "shm_name"),
        ({"shm_name": "x" * 201}, "shm_name"),
        ({"node_id": "a/b"}, "node_id"),
        ({"log_level": "verbose"}, "log_level"),
        ({"log_level": "INFO"}, "log_level"),
        ({"simulated_clock": {"offset_ms": 5, "wobble": 1}}, "wobble"),
        ({"simulated_clock": {"drift_ppm": 20_000}}, "drift_ppm"),
        ({"simulated_clock": {"drift_ppm": math.nan}}, "drift_ppm"),
        ({"simulated_clock": {"drift_ppm": "fast"}}, "simulated_clock"),
        ({"simulated_clock": {"wander_ppm_per_sqrt_s": -1}}, "wander"),
        ({"predictor": "oracle"}, "predictor"),
        ({"zero_shot_model": "gpt"}, "zero_shot_model"),
        ({"temperature_sensor": "thermal_zone0/temp"}, "temperature_sensor"),
    ],
)
def test_impossible_values_are_refused(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        build_config(values, {})


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan])
def test_drift_tolerance_errors_name_the_key_the_user_wrote(value: float) -> None:
    """BUG: DaemonConfig builds the EstimatorConfig before its own range check, so these fail
    as "drift_tolerance_ppb must be a positive finite number, got -1000.0": a key and a unit
    the user never wrote. The check of drift_tolerance_ppm should run first."""
    with pytest.raises(ConfigError, match="drift_tolerance_ppm"):
        build_config({"drift_tolerance_ppm": value}, {})


def test_servers_in_every_accepted_form() -> None:
    config = build_config(
        {"servers": ["ntp.example", "ntp.example:1123", "192.0.2.1", "::1", "[2001:db8::1]:123"]},
        {},
    )
    assert len(config.servers) == 5


@pytest.mark.parametrize(
    "simulated_clock",
    [
        {"offset_ms": math.inf},
        {"offset_ms": True},
        {"drift_ppm": True},
        {"seed": 1.5},
        {"seed": True},
    ],
)
def test_simulated_clock_values_are_type_checked_like_other_keys(
    simulated_clock: dict[str, Any],
) -> None:
    """BUG: the simulated_clock table's values go through float()/int()/round() unchecked:
    `offset_ms = inf` escapes as OverflowError (not ConfigError, so the CLI shows a traceback),
    and booleans or a fractional seed are silently taken (true → 1, 1.5 → 1)."""
    with pytest.raises(ConfigError, match="simulated_clock"):
        build_config({"simulated_clock": simulated_clock}, {})


@pytest.mark.parametrize("key", ["shm_name", "node_id"])
def test_names_with_a_trailing_newline_are_refused(key: str) -> None:
    """BUG: shm.validate_name checks `^…$` with re.match, and `$` also matches before a final
    newline, so "chronotick\\n" passes as a segment name (a file name with a newline)."""
    with pytest.raises(ConfigError, match=key):
        build_config({key: "chronotick\n"}, {})


def test_simulated_clock_parameters() -> None:
    config = build_config(
        {"simulated_clock": {"offset_ms": -50, "drift_ppm": 100.0, "seed": 7}}, {}
    )
    params = config.clock_params(epoch_ns=123)
    assert params is not None
    assert params.offset_ns == -50_000_000
    assert params.drift_ppm == 100.0
    assert params.seed == 7
    assert params.epoch_ns == 123


def test_segment_name() -> None:
    assert DaemonConfig().segment_name == "chronotick"
    assert DaemonConfig(node_id="node-2").segment_name == "chronotick-node-2"
    assert DaemonConfig(node_id="node-2", shm_name="mine").segment_name == "mine"
    assert DaemonConfig(shm_name="mine").segment_name == "mine"


# --- files ---------------------------------------------------------------------------------------


def test_load_file_reads_toml(tmp_path: Path) -> None:
    path = tmp_path / "chronotick.toml"
    path.write_text(
        'servers = ["a.example", "b.example:1123"]\n'
        "min_poll_s = 32\n"
        'log_level = "warning"\n'
        "[simulated_clock]\n"
        "offset_ms = -50\n"
        "drift_ppm = 100\n"
    )
    values = load_file(str(path))
    config = build_config(values, {"min_poll_s": None})
    assert config.servers == ("a.example", "b.example:1123")
    assert config.min_poll_s == 32.0
    assert config.log_level == "warning"
    assert config.clock_params(0) is not None


def test_load_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError, match=str(path)):
        load_file(str(path))


def test_load_file_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("min_poll_s = = 3\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_file(str(path))


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)), b"\xff\xfe\x00\x01garbage", b"\x00\x00\x00", b"min_poll_s = 64\n\xc3\x28"],
)
def test_load_file_binary_garbage(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=str(path)):
        load_file(str(path))


def test_load_file_on_a_directory_names_the_path(tmp_path: Path) -> None:
    """BUG: IsADirectoryError (an OSError other than the two handled) escapes load_file, so
    `chronotick-daemon --config /etc` ends in a traceback instead of a configuration error."""
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_file(str(tmp_path))


def test_load_file_unknown_key_reaches_build_config(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text("[poll]\nmin = 64\n")
    with pytest.raises(ConfigError, match="poll"):
        build_config(load_file(str(path)), {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9100", ("::1", 9100)),
        ("[::]:9100", ("::", 9100)),
        ("metrics.example:65535", ("metrics.example", 65535)),
    ],
)
def test_metrics_address_forms(text: str, expected: tuple[str, int]) -> None:
    config = build_config({}, {"metrics_address": text})
    assert config.metrics_listen() == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("localhost", "expected HOST:PORT"),
        ("localhost:", "expected HOST:PORT"),
        (":9100", "host name or address"),
        ("127.0.0.1:99999", "port must be 0-65535"),
        ("127.0.0.1:-1", "port must be 0-65535"),
        ("127.0.0.1:９１", "port must be 0-65535"),
        ("::1:9100", "brackets"),
        ("[not-v6]:9100", "not an IPv6 address"),
        ("[::1]", "expected \\[IPV6\\]:PORT"),
        ("[::1:9100", "expected \\[IPV6\\]:PORT"),
        ("bad host:9100", "host name or address"),
        ("host\n:9100", "host name or address"),
    ],
)
def test_bad_metrics_addresses_are_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        build_config({"metrics_address": text}, {})
    assert str(error.value).startswith("metrics_address: ")


def test_no_metrics_address_means_no_endpoint() -> None:
    assert DaemonConfig().metrics_listen() is None
