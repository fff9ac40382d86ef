"""Text for people: units by magnitude, aligned columns, and the `chronotick-node status`
table made from the same values `--json` prints."""

from __future__ import annotations

from typing import Any

import pytest

from chronotick.display import columns, format_ns, format_ppm, format_seconds
from coordinator.status_view import render_status


@pytest.mark.parametrize(
    ("ns", "signed", "text"),
    [
        (0, False, "0 ns"),
        (999, False, "999 ns"),
        (1_000, False, "1.00 µs"),
        (12_345, True, "+12.3 µs"),
        (-123_456, True, "-123 µs"),
        (99_960, False, "100 µs"),
        (999_960, False, "1.00 ms"),
        (1_234_567, False, "1.23 ms"),
        (-45_600_000, True, "-45.6 ms"),
        (2_500_000_000, False, "2.50 s"),
        (None, False, "-"),
        (float("inf"), False, "-"),
    ],
)
def test_format_ns_picks_the_unit_by_magnitude(ns: float | None, signed: bool, text: str) -> None:
    assert format_ns(ns, signed=signed) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4 s"), (9.94, "9.9 s"), (12.4, "12 s"), (185, "3m05s"), (7500, "2h05m"),
     (3 * 86400 + 4 * 3600, "3d04h"), (None, "-")],
)  # fmt: skip
def test_format_seconds(seconds: float | None, text: str) -> None:
    assert format_seconds(seconds) == text


def test_format_ppm() -> None:
    assert format_ppm(1234.5) == "+1.234 ppm" and format_ppm(-20) == "-0.020 ppm"


def test_columns_align_names_left_and_numbers_right() -> None:
    lines = columns(["NAME", "VALUE"], [["a", "1.00 µs"], ["longer", "123 ms"]])
    assert lines == ["NAME      VALUE", "a       1.00 µs", "longer   123 ms"]
    with pytest.raises(ValueError):
        columns(["A", "B"], [["only one"]])


def status_json(**changes: Any) -> dict[str, Any]:
    """What `chronotick-node status --json` prints for a node with two servers and two peers."""
    out: dict[str, Any] = {
        "node_id": "n1", "cluster": "lab", "protocol_version": 1, "software_version": "0.1.0",
        "status": "SYNCHRONIZED", "correction_ns": -12_345, "sigma_ns": 4_100,
        "bound_ns": 85_200, "drift_ppb": 1234.5, "source": "ntp+peers",
        "base_time_ns": 1_760_000_000_000_000_000, "sources_configured": 2,
        "sources_reachable": 1, "peers_known": 2, "peers_used": 1, "uptime_s": 192.0,
        "shm_name": "chronotick-n1", "last_sample_age_s": 0.8, "poll_interval_s": 64.0,
        "sources": [
            {"server": "ntp.example:123", "state": "used", "reach": 0o377, "stratum": 2,
             "poll_interval_s": 64.0, "offset_ns": 3_210, "delay_ns": 1_850_000,
             "sample_age_s": 12.0},
            {"server": "10.0.0.9:123", "state": "unreachable", "reach": 0o370, "stratum": 0,
             "poll_interval_s": 128.0, "offset_ns": None, "delay_ns": None,
             "sample_age_s": None},
        ],
        "peers": [
            {"node_id": "n2", "address": "10.0.0.2:7820", "discovered_by": "zeroconf",
             "state": "used", "offset_ns": 12_300, "sigma_ns": 40_000, "rtt_ns": 180_000,
             "age_s": 0.3},
            {"node_id": "liar", "address": "10.0.0.3:7820", "discovered_by": "static",
             "state": "falseticker", "offset_ns": 100_000_000, "sigma_ns": 41_000,
             "rtt_ns": 190_000, "age_s": 1.2},
        ],
        "consensus": {"offset_ns": 1_200, "sigma_ns": 50_000, "bound_ns": 300_000,
                      "peers_used": 1, "falsetickers": ["liar"]},
    }  # fmt: skip
    out.update(changes)
    return out


def test_status_table_has_the_header_sources_and_peers() -> None:
    text = render_status(status_json())
    lines = text.splitlines()
    header = dict(line.split(" : ", 1) for line in lines[: lines.index("")])
    assert {k.strip(): v for k, v in header.items()} == {
        "Node": "n1 (cluster lab), chronotick 0.1.0, up 3m12s",
        "Status": "SYNCHRONIZED (source ntp+peers)",
        "Offset": "-12.3 µs (true time − base clock)",
        "Drift": "+1.234 ppm",
        "σ": "4.10 µs",
        "Bound": "±85.2 µs",
        "Last sample": "0.8 s ago",
        "Poll interval": "1m04s",
        "Sources": "1 of 2 reachable",
        "Peers": "1 of 2 used",
        "Segment": "chronotick-n1",
    }
    assert len({line.index(" : ") for line in lines[: lines.index("")]}) == 1  # aligned
    sources = lines[lines.index("") + 1 : lines.index("") + 4]
    assert sources[0].split() == ["SERVER", "STATE", "REACH", "STRATUM", "POLL", "OFFSET",
                                  "DELAY", "AGE"]  # fmt: skip
    assert sources[1].split() == ["ntp.example:123", "used", "377", "2", "1m04s", "+3.21", "µs",
                                  "1.85", "ms", "12", "s"]  # fmt: skip
    assert sources[2].split() == ["10.0.0.9:123", "unreachable", "370", "-", "2m08s", "-", "-",
                                  "-"]  # fmt: skip
    # right-aligned numbers: every row of a column ends at the same place
    for column in ("REACH", "POLL", "OFFSET", "DELAY", "AGE"):
        end = sources[0].index(column) + len(column)
        assert all(len(row) >= end and row[end - 1] != " " for row in sources), column
    peers = lines[-4:-1]
    assert peers[0].split() == ["PEER", "ADDRESS", "VIA", "STATE", "OFFSET", "σ", "RTT", "AGE"]
    assert peers[1].split()[:4] == ["n2", "10.0.0.2:7820", "zeroconf", "used"]
    assert "+12.3 µs" in peers[1] and "180 µs" in peers[1]
    assert peers[2].split()[3:6] == ["falseticker", "+100", "ms"]
    assert text.endswith("consensus of 1: true time − base clock +1.20 µs ± 300 µs (σ 50.0 µs)"
                         "; falsetickers: liar")  # fmt: skip


def test_status_without_an_interval_sample_or_peers() -> None:
    quiet = status_json(
        status="UNKNOWN",
        source="",
        last_sample_age_s=None,
        peers=[],
        consensus=None,
        sources=[],
        sources_configured=0,
        sources_reachable=0,
    )
    text = render_status(quiet)
    assert "Status        : UNKNOWN\n" in text
    for key in ("Offset", "Drift", "σ", "Bound"):
        assert f"\n{key:<13} : -\n" in text
    assert "Last sample   : none yet" in text
    assert text.endswith("no NTP server configured\n\nno peers")


def test_status_of_an_older_node_renders_without_the_new_fields() -> None:
    """A node from before the table: its JSON has no sources, peers or sample age."""
    old = {
        k: v
        for k, v in status_json().items()
        if k not in ("sources", "peers", "consensus", "last_sample_age_s", "poll_interval_s")
    }
    text = render_status(old)  # fmt: skip
    assert "Last sample   : none yet" in text and "SERVER" not in text and "PEER" not in text
