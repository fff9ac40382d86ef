"""`chronotick-node start` flags and config file: every bad input is refused by name."""

from __future__ import annotations

import pathlib

import pytest

from chronotick.daemon.config import ConfigError
from coordinator import cli
from coordinator.config import NodeConfig, build_node_config


def config(*argv: str) -> NodeConfig:
    args = cli.parser().parse_args(["start", *argv])
    return cli.node_config_from_args(args)


def test_flags_reach_the_node_and_the_daemon() -> None:
    c = config("--node-id", "n1", "--cluster", "lab", "--listen", "127.0.0.1:9000",
               "--peer", "127.0.0.1:9001", "--peer", "[::1]:9002", "--no-discovery",
               "--server", "127.0.0.1:123", "--min-poll", "8")  # fmt: skip
    assert (c.node_id, c.cluster, c.listen_address) == ("n1", "lab", ("127.0.0.1", 9000))
    assert c.peers == ("127.0.0.1:9001", "[::1]:9002") and c.discovery is False
    assert c.daemon.servers == ("127.0.0.1:123",) and c.daemon.min_poll_s == 8.0
    # one node per host, several per machine: the segment carries the node id
    assert c.daemon.segment_name == "chronotick-n1"
    assert c.advertise_addresses == ["127.0.0.1"]


def test_file_then_flags(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('node_id = "f"\ncluster = "c1"\npeers = ["127.0.0.1:1"]\nmax_poll_s = 64.0\n')
    c = config("--config", str(path), "--cluster", "c2")
    assert (c.node_id, c.cluster, c.peers, c.daemon.max_poll_s) == (
        "f",
        "c2",
        ("127.0.0.1:1",),
        64.0,
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "node_id"),
        ({"node_id": "bad id"}, "node_id"),
        ({"node_id": "a", "cluster": ""}, "cluster"),
        ({"node_id": "a", "listen": "127.0.0.1"}, "listen"),
        ({"node_id": "a", "listen": "127.0.0.1:99999"}, "listen"),
        ({"node_id": "a", "peers": ["nohost"]}, "peers"),
        ({"node_id": "a", "listen": "10.1.2.3:7820"}, "--insecure"),
        ({"node_id": "a", "listen": "0.0.0.0:7820", "insecure": True}, "--advertise"),
        ({"node_id": "a", "tls_cert": "/etc/hostname"}, "all three"),
        ({"node_id": "a", "peer_poll_s": 0.0}, "peer_poll_s"),
        ({"node_id": "a", "peer_poll_s": 20.0, "peer_expiry_s": 10.0}, "peer_expiry_s"),
        ({"node_id": "a", "peer_burst": 0}, "peer_burst"),
        ({"node_id": "a", "discovery": "yes"}, "true or false"),
        ({"node_id": "a", "bogus": 1}, "unknown configuration keys: bogus"),
        ({"node_id": "a", "min_poll_s": -1.0}, "min_poll"),
    ],
)
def test_bad_configuration_is_refused_by_name(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        c = build_node_config(values, {})
        _ = c.advertise_addresses


def test_insecure_allows_plaintext_off_loopback() -> None:
    c = build_node_config({"node_id": "a", "listen": "10.1.2.3:7820", "insecure": True}, {})
    assert c.advertise_addresses == ["10.1.2.3"]


def test_start_with_bad_flags_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["start", "--node-id", "a", "--listen", "10.9.9.9:1"]) == 2
    assert "plaintext is allowed only on loopback" in capsys.readouterr().err


def test_query_of_nothing_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--connect", "127.0.0.1:1", "--timeout", "1"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err
