"""One measurement of the local clock against a reference."""

from __future__ import annotations

import dataclasses

from chronotick.ntp.packet import offset_and_delay


@dataclasses.dataclass(frozen=True)
class Sample:
    """The best exchange of one poll of one source.

    `local_ns` is the base-clock time the offset refers to (the midpoint of send and receive),
    `offset_ns` is reference − local (positive: the local clock is behind), `delay_ns` the round
    trip less the server's hold time. Root delay and dispersion are the server's own distance
    to its reference, as it reported them.
    """

    local_ns: int
    offset_ns: int
    delay_ns: int
    source: str
    root_delay_ns: int = 0
    root_dispersion_ns: int = 0
    stratum: int = 1
    precision_ns: int = 1

    @property
    def half_width_ns(self) -> int:
        """Half-width of the interval that must contain the true offset (root distance).

        Whatever the path asymmetry, the true offset lies within delay/2 of the measured one,
        plus whatever error the server itself carries (root delay/2 + root dispersion), plus
        the timestamp resolution.
        """
        return (
            self.delay_ns // 2
            + self.root_delay_ns // 2
            + self.root_dispersion_ns
            + self.precision_ns
        )


def sample_from_exchange(
    source: str,
    t1_ns: int,
    t2_ns: int,
    t3_ns: int,
    t4_ns: int,
    *,
    stratum: int = 1,
    root_delay_ns: int = 0,
    root_dispersion_ns: int = 0,
    precision_ns: int = 1,
) -> Sample | None:
    """The sample of one exchange (client send/receive T1/T4, server T2/T3), or None when its
    round trip comes out negative (a clock that moved backwards mid-exchange)."""
    offset, delay = offset_and_delay(t1_ns, t2_ns, t3_ns, t4_ns)
    if delay < 0:
        return None
    return Sample(
        local_ns=(t1_ns + t4_ns) // 2,
        offset_ns=offset,
        delay_ns=delay,
        source=source,
        root_delay_ns=root_delay_ns,
        root_dispersion_ns=root_dispersion_ns,
        stratum=stratum,
        precision_ns=precision_ns,
    )
