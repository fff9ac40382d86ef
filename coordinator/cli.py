"""`chronotick-node`: `start` runs a node; `status`, `peers`, `time` and `report` ask a
running one.

Exit codes: 0 success, 1 the node could not be reached or failed, 2 bad flags or config.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from typing import Any

import grpc

from chronotick import plotting
from chronotick.daemon.cli import add_daemon_arguments
from chronotick.daemon.config import ConfigError, load_file
from chronotick.daemon.stopper import stop_on_signals
from coordinator import history_report, protocol, scenarios, status_view
from coordinator.config import DEFAULT_PORT, NodeConfig, build_node_config
from coordinator.discovery import parse_host_port
from coordinator.exchange import credentials_from_files, describe_rpc_error, open_channel
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from coordinator.sync import DistributedSyncCoordinator, SyncError

PROG = "chronotick-node"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="A ChronoTick node: the daemon plus the peer service."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    start = sub.add_parser("start", help="run a node in the foreground")
    start.add_argument("--config", metavar="FILE", help="TOML file; its keys are the long options")
    start.add_argument("--cluster", metavar="NAME")
    start.add_argument("--listen", metavar="HOST:PORT", help=f"default 127.0.0.1:{DEFAULT_PORT}")
    start.add_argument("--advertise", action="append", metavar="ADDR",
                       help="address zeroconf binds to and announces (repeatable)")  # fmt: skip
    start.add_argument("--peer", action="append", dest="peers", metavar="HOST:PORT",
                       help="a static peer (repeatable)")  # fmt: skip
    start.add_argument("--dns-peer", action="append", dest="dns_peers", metavar="NAME:PORT",
                       help="every address of NAME is a peer (repeatable)")  # fmt: skip
    start.add_argument("--no-discovery", action="store_false", dest="discovery", default=None,
                       help="no zeroconf: static and DNS peers only")  # fmt: skip
    start.add_argument("--no-peer-time", action="store_false", dest="use_peers", default=None,
                       help="publish the NTP estimate alone, without the peers")  # fmt: skip
    start.add_argument("--health-listen", metavar="HOST:PORT",
                       help="a plaintext port serving only the gRPC health service")  # fmt: skip
    start.add_argument("--peer-poll", type=float, dest="peer_poll_s", metavar="SECONDS")
    start.add_argument("--peer-expiry", type=float, dest="peer_expiry_s", metavar="SECONDS")
    start.add_argument("--peer-timeout", type=float, dest="peer_timeout_s", metavar="SECONDS")
    start.add_argument("--execute-priority", type=int, dest="execute_priority", metavar="N",
                       help="SCHED_FIFO priority waiting for a sync point; 0: none")  # fmt: skip
    _add_security(start, insecure_help="plaintext on a non-loopback address (tests, labs)")
    add_daemon_arguments(start)

    demo = sub.add_parser("demo", help="a local cluster: converge, run the scenarios, commit")
    demo.add_argument("--nodes", type=int, default=3, metavar="N", help="2 to 8 (default 3)")
    demo.add_argument("--json", action="store_true", help="the summary as one JSON object")
    demo.add_argument("--commits", type=int, default=100, metavar="N")

    for name, text in (
        ("status", "the node's clock, sources and peers"),
        ("peers", "the node's peer table and consensus"),
        ("time", "the node's corrected time as an interval"),
        ("scenario", "run a scenario with the node's peers: simple, periodic or write"),
        ("commit", "commit timestamps across the node and its peers (TrueTime style)"),
        ("report", "the node's recent offsets, σ and bound: a summary, and a plot"),
    ):
        query = sub.add_parser(name, help=text)
        if name == "scenario":
            query.add_argument("name", choices=scenarios.NAMES)
        if name == "commit":
            query.add_argument("--count", type=int, default=1, metavar="N")
        if name == "report":
            query.add_argument("--since", type=float, default=0.0, metavar="SECONDS",
                               help="only the last SECONDS (default: all it keeps)")  # fmt: skip
            query.add_argument("--plot", metavar="FILE.png",
                               help="draw the offsets, ±σ and ±bound over time")  # fmt: skip
        query.add_argument("--connect", metavar="HOST:PORT", default=f"127.0.0.1:{DEFAULT_PORT}")
        query.add_argument("--json", action="store_true", help="one JSON object")
        query.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS")
        _add_security(query, insecure_help="accepted for symmetry; plaintext is the default")
    return p


def _add_security(p: argparse.ArgumentParser, insecure_help: str) -> None:
    p.add_argument("--insecure", action="store_true", default=None, help=insecure_help)
    p.add_argument("--tls-cert", metavar="FILE", help="this node's certificate (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    p.add_argument("--tls-ca", metavar="FILE", help="the cluster's CA certificate (PEM)")
    p.add_argument("--tls-server-name", metavar="NAME",
                   help="name the peers' certificates carry, when not their address")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "start":
        return _start(args)
    if args.command in ("scenario", "commit"):
        return _act(args)
    if args.command == "report":
        return _report(args)
    if args.command == "demo":
        from coordinator import demo as demo_module

        return demo_module.main(nodes=args.nodes, as_json=args.json, commits=args.commits)
    return _query(args)


# -- scenario, commit --------------------------------------------------------------------------


def _connection(args: argparse.Namespace) -> tuple[grpc.ChannelCredentials | None, str] | None:
    """The TLS credentials and server name for `--connect`, or None (and the message printed)
    when a flag is wrong."""
    try:
        credentials, server_name = _credentials(args)
        parse_host_port(args.connect)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return None
    if not (0 < args.timeout <= 600):
        print(f"{PROG}: --timeout must be between 0 and 600 s", file=sys.stderr)
        return None
    return credentials, server_name


def _act(args: argparse.Namespace) -> int:
    connection = _connection(args)
    if connection is None:
        return 2
    credentials, server_name = connection
    if args.command == "commit" and not 1 <= args.count <= 100_000:
        print(f"{PROG}: --count must be between 1 and 100000", file=sys.stderr)
        return 2
    try:
        with DistributedSyncCoordinator(
            connect=args.connect,
            credentials=credentials,
            server_name=server_name,
            timeout_s=args.timeout,
        ) as sync:
            if args.command == "scenario":
                result = scenarios.run(sync, args.name)
                print(json.dumps(result.as_dict()) if args.json else scenarios.describe(result))
                return 0 if result.within_tolerance else 1
            commits = [sync.commit_timestamp() for _ in range(args.count)]
    except SyncError as exc:
        print(f"{PROG}: {args.connect}: {exc}", file=sys.stderr)
        return 1
    for c in commits:
        row = {
            "timestamp_ns": c.timestamp_ns,
            "participants": list(c.participants),
            "commit_wait_ms": round(c.commit_wait_ns / 1e6, 3),
            "max_bound_ms": round(c.max_bound_ns / 1e6, 3),
        }
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"commit {c.timestamp_ns}  wait {row['commit_wait_ms']:.3f} ms  "
                f"(max bound ±{row['max_bound_ms']:.3f} ms; {len(c.participants)} nodes)"
            )
    return 0


# -- start -----------------------------------------------------------------------------------


def _start(args: argparse.Namespace) -> int:
    try:
        config = node_config_from_args(args)
    except ConfigError as exc:
        print(f"{PROG}: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.daemon.logging_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from coordinator.node import Node  # grpc server parts load only when a node runs

    try:
        node = Node(config)
        stop_on_signals(node.stop_flag, logging.getLogger("chronotick.node"))
        node.run()
    except (RuntimeError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 0


def node_config_from_args(args: argparse.Namespace) -> NodeConfig:
    """What `chronotick-node start` runs with: the `--config` file, then the flags over it.

    Public so that tests and tools check a configuration exactly as the node would read it.
    """
    file_values = load_file(args.config) if args.config else {}
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "command")}
    for key in ("advertise", "peers", "dns_peers"):
        if overrides.get(key) is not None:
            overrides[key] = tuple(overrides[key])
    return build_node_config(file_values, overrides)


# -- queries ---------------------------------------------------------------------------------


def _query(args: argparse.Namespace) -> int:
    connection = _connection(args)
    if connection is None:
        return 2
    credentials, server_name = connection
    channel = open_channel(args.connect, credentials, server_name)
    stub = pb_grpc.PeerServiceStub(channel)
    version = protocol.PROTOCOL_VERSION
    try:
        if args.command == "status":
            out = _status_dict(stub.GetStatus(pb.StatusRequest(protocol_version=version),
                                              timeout=args.timeout))  # fmt: skip
            peers = _peers_dict(stub.ListPeers(pb.ListPeersRequest(protocol_version=version),
                                               timeout=args.timeout))  # fmt: skip
            out.update(peers=peers["peers"], consensus=peers["consensus"])
        elif args.command == "peers":
            out = _peers_dict(stub.ListPeers(pb.ListPeersRequest(protocol_version=version),
                                             timeout=args.timeout))  # fmt: skip
        else:
            out = _time_dict(stub.GetTime(pb.TimeRequest(protocol_version=version),
                                          timeout=args.timeout))  # fmt: skip
    except grpc.RpcError as exc:
        print(f"{PROG}: {args.connect}: {describe_rpc_error(exc)}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    print(json.dumps(out) if args.json else _human(args.command, out))
    return 0


def _credentials(args: argparse.Namespace) -> tuple[grpc.ChannelCredentials | None, str]:
    try:
        creds = credentials_from_files(args.tls_cert or "", args.tls_key or "", args.tls_ca or "")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return creds, args.tls_server_name or ""


def _estimate_dict(estimate: pb.ClockEstimate) -> dict[str, Any]:
    return {
        "status": protocol.status_name(estimate.status),
        "correction_ns": estimate.correction_ns,
        "sigma_ns": estimate.sigma_ns,
        "bound_ns": estimate.bound_ns,
        "drift_ppb": estimate.drift_ppb,
        "source": estimate.source,
    }


def _status_dict(reply: pb.StatusReply) -> dict[str, Any]:
    return {
        "node_id": reply.node_id,
        "cluster": reply.cluster,
        "protocol_version": reply.protocol_version,
        "software_version": reply.software_version,
        **_estimate_dict(reply.estimate),
        "base_time_ns": reply.base_time_ns,
        "sources_configured": reply.sources_configured,
        "sources_reachable": reply.sources_reachable,
        "peers_known": reply.peers_known,
        "peers_used": reply.peers_used,
        "uptime_s": round(reply.uptime_s, 3),
        "shm_name": reply.shm_name,
        "last_sample_age_s": (
            round(reply.last_sample_age_s, 3) if reply.HasField("last_sample_age_s") else None
        ),
        "poll_interval_s": reply.poll_interval_s,
        "sources": [_source_dict(s) for s in reply.sources],
    }


def _source_dict(source: pb.SourceEntry) -> dict[str, Any]:
    has = source.HasField("sample_age_s")
    return {
        "server": source.server,
        "state": source.state,
        "reach": source.reach,
        "stratum": source.stratum,
        "poll_interval_s": source.poll_interval_s,
        "offset_ns": source.offset_ns if has else None,
        "delay_ns": source.delay_ns if has else None,
        "sample_age_s": round(source.sample_age_s, 3) if has else None,
    }


def _peers_dict(reply: pb.ListPeersReply) -> dict[str, Any]:
    peers = [
        {
            "node_id": p.node_id,
            "address": p.address,
            "discovered_by": p.discovered_by,
            "state": p.state,
            "offset_ns": p.offset_ns,
            "sigma_ns": p.sigma_ns,
            "rtt_ns": p.rtt_ns,
            "age_s": round(p.age_s, 3),
            "expires_in_s": round(p.expires_in_s, 3),
            "measured_at_ns": p.measured_at_ns,
            "true_offset_ns": p.true_offset_ns,
            "true_sigma_ns": p.true_sigma_ns,
            "peer_status": protocol.status_name(p.peer_estimate.status),
        }
        for p in reply.peers
    ]
    c = reply.consensus
    consensus = None
    if c.peers_used:
        consensus = {
            "offset_ns": c.offset_ns,
            "sigma_ns": c.sigma_ns,
            "bound_ns": c.bound_ns,
            "peers_used": c.peers_used,
            "falsetickers": list(c.falsetickers),
        }
    return {"node_id": reply.node_id, "peers": peers, "consensus": consensus}


def _time_dict(reply: pb.TimeReply) -> dict[str, Any]:
    return {
        "node_id": reply.node_id,
        "status": protocol.status_name(reply.status),
        "source": reply.source,
        "corrected_ns": reply.corrected_ns or None,
        "earliest_ns": reply.earliest_ns or None,
        "latest_ns": reply.latest_ns or None,
        "sigma_ns": reply.sigma_ns if reply.corrected_ns else None,
    }


def _human(command: str, out: dict[str, Any]) -> str:
    if command == "status":
        return status_view.render_status(out)
    if command == "peers":
        return status_view.render_peers(out)
    width = max(len(k) for k in out)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in out.items())


# -- report ----------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    """Check every flag (and that a plot can be made and written) before asking the node:
    a wrong path should not cost a round trip, nor a reachable node an unwritten file."""
    connection = _connection(args)
    if connection is None:
        return 2
    credentials, server_name = connection
    since = args.since
    if not (math.isfinite(since) and 0 <= since <= protocol.MAX_HISTORY_S):
        print(f"{PROG}: --since must be between 0 and {protocol.MAX_HISTORY_S:.0f} s "
              f"(0: all the node keeps), not {since}", file=sys.stderr)  # fmt: skip
        return 2
    if args.plot:
        problem = _plot_path_problem(args.plot)
        if problem is None:
            try:
                plotting.pyplot()
            except plotting.PlotUnavailable as exc:
                problem = str(exc)
        if problem:
            print(f"{PROG}: {problem}", file=sys.stderr)
            return 2
    channel = open_channel(args.connect, credentials, server_name)
    try:
        reply = pb_grpc.PeerServiceStub(channel).GetHistory(
            pb.HistoryRequest(protocol_version=protocol.PROTOCOL_VERSION, since_s=since),
            timeout=args.timeout,
        )
    except grpc.RpcError as exc:
        print(f"{PROG}: {args.connect}: {describe_rpc_error(exc)}", file=sys.stderr)
        return 1
    finally:
        channel.close()
    history = history_report.history_dict(reply, since)
    if args.plot:
        try:
            history_report.plot(args.plot, history)
        except (OSError, ValueError) as exc:
            print(f"{PROG}: cannot write {args.plot}: {exc}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(history))
    else:
        print(history_report.render_summary(history))
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


#: what matplotlib writes, by file name suffix
_PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _plot_path_problem(path: str) -> str | None:
    """Why `path` cannot take the plot, or None."""
    if not path.lower().endswith(_PLOT_SUFFIXES):
        return f"--plot {path}: the file name must end in {', '.join(_PLOT_SUFFIXES)}"
    if os.path.isdir(path):
        return f"--plot {path}: is a directory"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"--plot {path}: no directory {directory}"
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"--plot {path}: not writable"
    return None


if __name__ == "__main__":
    sys.exit(main())
