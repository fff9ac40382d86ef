"""An embedded NTP server that serves any `Clock` over UDP.

It is the reference clock for tests and the demo: serving a `SimulatedClock` gives real NTP
clients (chronyd, ntpdig) and our own sampler a server whose offset, drift and wander are known
exactly. Packet logic lives in `packet.py` (no I/O); this module only moves datagrams.

The four timestamps are only as good as the moments they are taken at, so the receive time is
read right after `recvfrom` returns and the transmit time right before `sendto`, patched into the
already built reply. Anything that is not a well-formed client request is dropped silently (as
real servers do), counted by reason, and never stops the serving thread.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct
import threading
from types import TracebackType

from chronotick.clocks import NS_PER_S, Clock
from chronotick.ntp.packet import ReplyError, ServerIdentity, build_reply, ns_to_ntp64

log = logging.getLogger(__name__)

# A stratum-1 server says when it last set its clock from its reference; a second ago reads as
# "recently synchronized" to clients that check the reference timestamp's age.
REFERENCE_AGE_NS = NS_PER_S
# How often the serving thread looks at the stop flag: bounds how long stop() can take.
POLL_INTERVAL_S = 0.05
_MAX_DATAGRAM = 2048  # NTP packets with extension fields and MACs stay well below this
_TRANSMIT_FIELD = struct.Struct("!Q")  # RFC 5905 packet header: transmit timestamp at byte 40
_TRANSMIT_OFFSET = 40


@dataclasses.dataclass
class ServerStats:
    """Counts since start: requests answered, and datagrams ignored by reason."""

    answered: int = 0
    ignored: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def total_ignored(self) -> int:
        return sum(self.ignored.values())


class NtpServer:
    """Serve `clock` to NTP clients on UDP `host:port` from a daemon thread.

    `port=0` binds an ephemeral port; `address` then tells which. Use as a context manager or
    call `start()` / `stop()`.
    """

    def __init__(
        self,
        clock: Clock,
        host: str = "127.0.0.1",
        port: int = 123,
        identity: ServerIdentity = ServerIdentity(),  # noqa: B008  (frozen, so safe to share)
    ) -> None:
        self._clock = clock
        self._host = host
        self._port = port
        self._identity = identity
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stats = ServerStats()
        self._stats_lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); only valid once started."""
        if self._sock is None:
            raise RuntimeError("the server is not started")
        sockname = self._sock.getsockname()
        return str(sockname[0]), int(sockname[1])

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the counters (the serving thread keeps updating its own)."""
        with self._stats_lock:
            return ServerStats(self._stats.answered, dict(self._stats.ignored))

    def start(self) -> None:
        """Bind the socket (raising OSError, e.g. when the port is in use) and start serving."""
        if self._thread is not None:
            raise RuntimeError("the server was already started")
        # AI_PASSIVE|AI_NUMERICSERV: resolve "::1", "127.0.0.1" or a name to a bindable address.
        family, _, _, _, sockaddr = socket.getaddrinfo(
            self._host,
            self._port,
            type=socket.SOCK_DGRAM,
            flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV,
        )[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(sockaddr)
        except OSError:
            sock.close()
            raise
        # A short timeout rather than a blocking read: closing a socket does not wake a thread
        # blocked in recvfrom on Linux, so the thread must come back to check the stop flag.
        sock.settimeout(POLL_INTERVAL_S)
        self._sock = sock
        self._thread = threading.Thread(
            target=self._serve, name=f"ntp-server-{self.address[1]}", daemon=True
        )
        self._thread.start()
        log.info("NTP server listening on %s port %d", *self.address)

    def stop(self) -> None:
        """Stop serving and release the port; returns within about POLL_INTERVAL_S."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> NtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stopping.is_set():
            try:
                data, peer = sock.recvfrom(_MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError as exc:  # e.g. a queued ICMP error; the socket itself is still fine
                log.debug("recvfrom failed: %s", exc)
                continue
            try:
                receive_ns = self._clock.now_ns()
                self._answer(sock, data, peer, receive_ns)
            except ReplyError as exc:
                log.debug("ignored a datagram from %s: %s", peer, exc)
                self._count_ignored(exc.reason)
            except OSError as exc:
                log.debug("could not reply to %s: %s", peer, exc)
                self._count_ignored("send_failed")
            except Exception:  # a bug must cost one reply, not the server
                log.exception("unexpected error answering %s", peer)
                self._count_ignored("internal_error")

    def _answer(
        self, sock: socket.socket, data: bytes, peer: tuple[str | int, ...], receive_ns: int
    ) -> None:
        reference_ns = receive_ns - REFERENCE_AGE_NS
        reply = bytearray(build_reply(data, receive_ns, receive_ns, reference_ns, self._identity))
        # Counted under the lock together with the send, so that a client holding its reply
        # also sees it in `stats` (readers only hold the lock to copy two fields).
        with self._stats_lock:
            # Never before the receive time (a simulated clock can be stepped back): clients
            # drop replies whose server processing time is negative.
            transmit_ns = max(self._clock.now_ns(), receive_ns)
            _TRANSMIT_FIELD.pack_into(reply, _TRANSMIT_OFFSET, ns_to_ntp64(transmit_ns))
            sock.sendto(reply, peer)
            self._stats.answered += 1

    def _count_ignored(self, reason: str) -> None:
        with self._stats_lock:
            self._stats.ignored[reason] = self._stats.ignored.get(reason, 0) + 1
