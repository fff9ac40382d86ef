"""One measurement of the local clock against a reference."""

from __future__ import annotations

import dataclasses


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
