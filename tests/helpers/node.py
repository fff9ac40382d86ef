"""Real `chronotick-node start` processes on 127.0.0.1 for integration tests: start them with
fast polls, ask them through the CLI, read their logs, and always stop them and remove their
shared-memory segments."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import grpc

from coordinator import protocol
from coordinator.exchange import open_channel
from coordinator.proto.chronotick.v1 import peer_pb2 as pb
from coordinator.proto.chronotick.v1 import peer_pb2_grpc as pb_grpc
from tests.helpers.segments import remove_segment_files, unique_name

ROOT = Path(__file__).resolve().parents[2]
#: fast polls everywhere: a node synchronizes in ~2 s and measures its peers twice a second
FAST_FLAGS = [
    "--no-discovery",
    "--min-poll", "1",
    "--max-poll", "2",
    "--peer-poll", "0.5",
    "--peer-timeout", "0.3",
    "--peer-expiry", "3",
]  # fmt: skip
#: daemon keys without a flag of their own go in a config file
FAST_TOML = "warmup_interval_s = 0.5\nburst_size = 2\nburst_spacing_s = 0.05\n"
SYNC_TIMEOUT_S = 30.0


def free_tcp_port() -> int:
    """A port free on 127.0.0.1 now (the node binds it a moment later: a tiny race that a
    port from the ephemeral range makes unlikely; a lost race shows as a clear bind error)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what()}")
        time.sleep(0.1)


@dataclasses.dataclass
class NodeProcess:
    """A running `chronotick-node start`, its log file and how to talk to it."""

    node_id: str
    port: int
    shm_name: str
    log_path: Path
    process: subprocess.Popen[bytes]
    #: --tls-cert/--tls-key/--tls-ca of its own identity (empty: plaintext)
    tls_flags: list[str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self, *needles: str) -> list[str]:
        """Lines of the log that contain every needle."""
        return [line for line in self.log().splitlines() if all(n in line for n in needles)]

    def cli(
        self, command: str, *, tls_flags: Sequence[str] | None = None, timeout_s: float = 3.0
    ) -> subprocess.CompletedProcess[str]:
        """`chronotick-node COMMAND --connect THIS --json`, with this node's identity unless
        `tls_flags` says otherwise."""
        flags = self.tls_flags if tls_flags is None else list(tls_flags)
        return subprocess.run(
            [sys.executable, "-m", "coordinator.cli", command, "--connect", self.address,
             "--json", "--timeout", str(timeout_s), *flags],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
        )  # fmt: skip

    def peers_json(self) -> dict[str, object]:
        result = self.cli("peers")
        assert result.returncode == 0, result.stderr
        out: dict[str, object] = json.loads(result.stdout)
        return out

    def channel(self) -> grpc.Channel:
        """An in-process channel with this node's own identity (quicker than the CLI for
        polling)."""
        if not self.tls_flags:
            return open_channel(self.address, None)
        cert, key, ca = (Path(self.tls_flags[i]).read_bytes() for i in (1, 3, 5))
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        return open_channel(self.address, creds)

    def status(self, timeout_s: float = 2.0) -> pb.StatusReply:
        with self.channel() as channel:
            reply: pb.StatusReply = pb_grpc.PeerServiceStub(channel).GetStatus(
                pb.StatusRequest(protocol_version=protocol.PROTOCOL_VERSION), timeout=timeout_s
            )
            return reply

    def list_peers(self, timeout_s: float = 2.0) -> pb.ListPeersReply:
        with self.channel() as channel:
            reply: pb.ListPeersReply = pb_grpc.PeerServiceStub(channel).ListPeers(
                pb.ListPeersRequest(protocol_version=protocol.PROTOCOL_VERSION), timeout=timeout_s
            )
            return reply

    def is_synchronized(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"node {self.node_id} exited with {self.process.returncode}:\n{self.log()}"
            )
        try:
            status = self.status()
        except grpc.RpcError:
            return False
        return status.estimate.status == pb.CLOCK_STATUS_SYNCHRONIZED

    def wait_synchronized(self) -> None:
        wait_until(
            self.is_synchronized,
            SYNC_TIMEOUT_S,
            lambda: f"node {self.node_id} to be SYNCHRONIZED; its log:\n{self.log()}",
        )


class NodeProcesses:
    """Starts an NTP reference and nodes as subprocesses, logs in `directory`; `stop_all`
    ends every one of them (SIGTERM, then SIGKILL) and removes their segments, whatever
    happened."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.config = directory / "fast.toml"
        self.config.write_text(FAST_TOML)
        self._processes: list[subprocess.Popen[bytes]] = []
        self._segments: list[str] = []
        self._logs: list[IO[bytes]] = []

    def _spawn(
        self, args: list[str], log_path: Path, stdout: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `python ARGS` with stderr (and stdout, unless `stdout` says otherwise) into
        `log_path`; the process is ended by `stop_all`."""
        log = open(log_path, "wb")  # closed by stop_all, after the process ended
        self._logs.append(log)
        process = subprocess.Popen(
            [sys.executable, *args],
            stdout=log if stdout is None else stdout,
            stderr=log,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # a ^C on the test run does not hit the nodes first
        )
        self._processes.append(process)
        return process

    def ntp_server(self) -> str:
        """An NTP server on 127.0.0.1 serving the system clock; returns HOST:PORT."""
        process = self._spawn(
            ["-m", "chronotick.ntp.server_cli", "--listen", "127.0.0.1:0"],
            self.directory / "ntp.log",
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15.0)
        assert ready, "the NTP server did not start within 15 s"
        line = process.stdout.readline().decode()
        found = re.search(r" on (127\.0\.0\.1:\d+)", line)
        assert found, f"unexpected first line from the NTP server: {line!r}"
        return found.group(1)

    def node(
        self,
        node_id: str,
        port: int,
        ntp: str,
        peers: Sequence[int] = (),
        tls_flags: Sequence[str] = (),
        extra: Sequence[str] = (),
    ) -> NodeProcess:
        shm_name = unique_name(f"test-{node_id}")
        self._segments.append(shm_name)
        log_path = self.directory / f"{node_id}.log"
        args = ["-m", "coordinator.cli", "start", "--node-id", node_id,
                "--listen", f"127.0.0.1:{port}", "--server", ntp, "--shm-name", shm_name,
                "--config", str(self.config), *FAST_FLAGS, *tls_flags, *extra]  # fmt: skip
        for peer in peers:
            args += ["--peer", f"127.0.0.1:{peer}"]
        process = self._spawn(args, log_path)
        return NodeProcess(node_id, port, shm_name, log_path, process, list(tls_flags))

    def stop_all(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        for log in self._logs:
            log.close()
        for name in self._segments:
            remove_segment_files(name)


@contextlib.contextmanager
def node_processes(directory: Path) -> Iterator[NodeProcesses]:
    procs = NodeProcesses(directory)
    try:
        yield procs
    finally:
        procs.stop_all()


def start_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`chronotick-node start ...` expected to exit at once (bad flags): it must not run."""
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "start", *args],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
