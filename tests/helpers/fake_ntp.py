"""NTP servers that misbehave on purpose: garbage, forged replies, Kiss-o'-Death, silence."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType

from chronotick.ntp.packet import ServerIdentity, build_reply

Responder = Callable[[bytes], list[bytes]]


class FakeNtpServer:
    """Answers each datagram on 127.0.0.1 with whatever `respond` returns (maybe nothing)."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests = 0
        self.request_times: list[float] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> FakeNtpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop = True
        self._thread.join()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                data, peer = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.requests += 1
            self.request_times.append(time.monotonic())
            for reply in self.respond(data):
                self._sock.sendto(reply, peer)


def honest_reply(
    request: bytes, offset_ns: int = 0, identity: ServerIdentity | None = None
) -> bytes:
    now = time.time_ns() + offset_ns
    return build_reply(request, now, now, now - 1_000_000_000, identity or ServerIdentity())


def garbage(seed: int = 1) -> Responder:
    """Random bytes, short packets, replies with a forged origin, client-mode echoes."""
    rng = random.Random(seed)

    def respond(request: bytes) -> list[bytes]:
        forged = bytearray(honest_reply(request))
        struct.pack_into("!Q", forged, 24, rng.getrandbits(64))
        return [
            rng.randbytes(rng.randint(0, 200)),
            b"\x1c" * 7,
            bytes(forged),
            request,  # mode 3 echoed back
        ]

    return respond


def kiss(code: bytes) -> Responder:
    def respond(request: bytes) -> list[bytes]:
        return [honest_reply(request, identity=ServerIdentity(stratum=0, ref_id=code))]

    return respond


def silent(_request: bytes) -> list[bytes]:
    return []


def lying(offset_ns: int) -> Responder:
    def respond(request: bytes) -> list[bytes]:
        return [honest_reply(request, offset_ns)]

    return respond
