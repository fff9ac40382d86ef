"""`chronotick-node report`: the history as values, its summary, its plot, and the flags that
are refused before any node is asked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from coordinator import cli, history_report
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from tests.helpers.node import free_tcp_port

S = 1_000_000_000
T0 = 1_760_000_000 * S


def reply() -> pb.HistoryReply:
    """60 s: UNKNOWN for 5 s, then SYNCHRONIZED; a sample every 4 s, one of them refused."""
    out = pb.HistoryReply(protocol_version=1, node_id="n1", base_time_ns=T0, kept_s=3600.0)
    for age in range(60, 0, -1):
        synced = age <= 55
        point = pb.HistoryPoint(
            age_s=age,
            base_time_ns=T0 - age * S,
            offset_ns=20_000 + 100 * age if synced else 0,
            sigma_ns=5_000 + age if synced else 0,
            bound_ns=80_000 if synced else 0,
            status=pb.CLOCK_STATUS_SYNCHRONIZED if synced else pb.CLOCK_STATUS_UNKNOWN,
            source="ntp",
        )
        if synced and age < 30:
            point.consensus_offset_ns = 25_000
        out.points.append(point)
    out.servers.extend(["a.example:123", "b.example:123"])
    for age in range(60, 0, -4):
        out.samples.append(
            pb.HistorySample(age_s=age + 0.5, base_time_ns=T0 - age * S, server=age % 8 // 4,
                             offset_ns=21_000 - age, delay_ns=90_000,
                             rejected="outlier" if age == 24 else "")
        )  # fmt: skip
    out.status_changes.append(
        pb.StatusChange(age_s=55, base_time_ns=T0 - 55 * S, old_status=pb.CLOCK_STATUS_UNKNOWN,
                        new_status=pb.CLOCK_STATUS_SYNCHRONIZED, reason="the model fits 3 samples")
    )  # fmt: skip
    return out


def test_history_values_and_their_summary() -> None:
    history = history_report.history_dict(reply(), since_s=0.0)
    assert history["since_s"] is None and history["node_id"] == "n1"
    assert history["points"][0] == {
        "age_s": 60.0, "base_time_ns": T0 - 60 * S, "status": "UNKNOWN", "source": "ntp",
        "offset_ns": 0, "sigma_ns": 0, "bound_ns": 0, "consensus_offset_ns": None,
    }  # fmt: skip
    assert history["points"][-1]["consensus_offset_ns"] == 25_000
    assert {s["server"] for s in history["samples"]} == {"a.example:123", "b.example:123"}
    assert history["status_changes"] == [
        {"age_s": 55.0, "base_time_ns": T0 - 55 * S, "from": "UNKNOWN", "to": "SYNCHRONIZED",
         "reason": "the model fits 3 samples"}
    ]  # fmt: skip
    summary = history["summary"]
    assert summary == {
        "span_s": 59.0, "points": 60, "points_with_interval": 55, "status": "SYNCHRONIZED",
        "offset_min_ns": 20_100, "offset_max_ns": 25_500, "sigma_median_ns": 5_028,
        "bound_median_ns": 80_000, "samples": 15, "samples_refused": {"outlier": 1},
        "servers": ["a.example:123", "b.example:123"], "sample_offset_min_ns": 20_940,
        "sample_offset_max_ns": 20_996, "status_changes": 1,
    }  # fmt: skip
    text = history_report.render_summary(history)
    assert text.splitlines() == [
        "node n1: 60 points over 59 s (the node keeps 1h00m); status now SYNCHRONIZED",
        "  offset  +20.1 µs .. +25.5 µs (published, true time − base clock)",
        "  σ       median 5.03 µs",
        "  bound   median ±80.0 µs",
        "  samples 15 from a.example:123, b.example:123: measured offsets +20.9 µs .. +21.0 µs;"
        " refused: 1 outlier",
        "  status changes: 1",
        "    55 s ago: UNKNOWN -> SYNCHRONIZED: the model fits 3 samples",
    ]


def test_an_empty_history_summarizes_without_failing() -> None:
    empty = pb.HistoryReply(protocol_version=1, node_id="n1", kept_s=3600.0)
    history = history_report.history_dict(empty, since_s=10.0)
    assert history["summary"]["points"] == 0 and history["summary"]["status"] is None
    text = history_report.render_summary(history)
    assert "no point with an interval yet" in text and "no NTP sample" in text


def test_plot_is_a_png_with_something_drawn(tmp_path: Path) -> None:
    import matplotlib.image as matplotlib_image  # a dev dependency, as the plot's own

    path = tmp_path / "history.png"
    history_report.plot(str(path), history_report.history_dict(reply(), 0.0))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib_image.imread(str(path))
    assert pixels.shape[:2] == (550, 1210)  # 11 x 5 inches at 110 dpi
    colours = {tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::7].tolist()}
    assert len(colours) > 50  # bands, a line, dots of two servers, text: not a blank canvas


def run_report(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["report", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "-5"], "--since must be between 0 and 86400 s"),
        (["--since", "nan"], "--since must be between 0 and 86400 s"),
        (["--since", "1e9"], "--since must be between 0 and 86400 s"),
        (["--plot", "/nonexistent-dir/x.png"], "no directory /nonexistent-dir"),
        (["--plot", "out.jpeg"], "the file name must end in .png, .svg, .pdf"),
        (["--timeout", "0"], "--timeout must be between 0 and 600 s"),
    ],
)
def test_bad_flags_exit_2_before_asking_any_node(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # nothing listens on the port: had the flag passed, the exit would be 1, not 2
    code, out, err = run_report("--connect", f"127.0.0.1:{free_tcp_port()}", *args,
                                capsys=capsys)  # fmt: skip
    assert (code, out) == (2, "")
    assert message in err


def test_a_directory_as_plot_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "dir.png"
    target.mkdir()
    code, _, err = run_report("--plot", str(target), capsys=capsys)
    assert code == 2 and "is a directory" in err


def test_without_matplotlib_plot_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    code, _, err = run_report("--connect", f"127.0.0.1:{free_tcp_port()}",
                              "--plot", str(tmp_path / "x.png"), capsys=capsys)  # fmt: skip
    assert code == 2
    assert "--plot needs matplotlib: pip install 'chronotick[plot]'" in err
    assert not (tmp_path / "x.png").exists()


def test_an_unreachable_node_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{free_tcp_port()}"
    code, out, err = run_report("--connect", address, "--json", capsys=capsys)
    assert (code, out) == (1, "")
    assert f"chronotick-node: {address}: UNAVAILABLE" in err
