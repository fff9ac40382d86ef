"""chronyd as a local NTP reference: `-x` (never touches the clock), loopback only."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from tests.conftest import require_binary


class ChronyServer:
    """`local stratum 1` on 127.0.0.1:PORT, with its own pidfile, driftfile and no cmdport."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.binary = require_binary("chronyd")
        self.dir = tempfile.mkdtemp(prefix="chronotick-chrony-")
        self.conf = os.path.join(self.dir, "chrony.conf")
        with open(self.conf, "w") as handle:
            handle.write(
                "local stratum 1\n"
                "allow 127.0.0.1\n"
                f"port {port}\n"
                "bindaddress 127.0.0.1\n"
                "cmdport 0\n"
                f"pidfile {self.dir}/chronyd.pid\n"
                f"driftfile {self.dir}/drift\n"
            )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-x", "-d", "-f", self.conf],
            stdout=open(os.path.join(self.dir, "chronyd.log"), "ab"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError(f"chronyd exited at start: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "chronyd.log")) as handle:
                return handle.read()
        except FileNotFoundError:
            return ""
