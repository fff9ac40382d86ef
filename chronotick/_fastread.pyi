"""Types of the C extension chronotick/_fastread.c (optional: the client works without it)."""

from typing import overload

from typing_extensions import Buffer

API_VERSION: int
SEGMENT_SIZE: int
LAYOUT_VERSION: int
HOT_OFFSET: int
FLAGS_OFFSET: int
TAIL_OFFSET: int
CLOCK_KIND_OFFSET: int
CLOCK_PARAMS_OFFSET: int
FLAG_CLOSED: int
STEP_TOLERANCE_NS: int
SPINS: int

class Reader:
    """The hot read of a mapped segment; holds a buffer export of it until `release()`.

    `now_ns()` / `now()` read the clocks themselves; given (realtime_ns, monotonic_ns) they use
    those readings instead (tests). Both answer None when the Python path must decide.
    """

    def __init__(self, segment: Buffer) -> None: ...
    @overload
    def now_ns(self) -> tuple[int, int] | None: ...
    @overload
    def now_ns(self, realtime_ns: int, monotonic_ns: int, /) -> tuple[int, int] | None: ...
    @overload
    def now(self) -> tuple[float, float] | None: ...
    @overload
    def now(self, realtime_ns: int, monotonic_ns: int, /) -> tuple[float, float] | None: ...
    def hot_fields(
        self,
    ) -> tuple[int, int, int, int, int, float, int, float, int, int, int] | None: ...
    def release(self) -> None: ...
    @property
    def released(self) -> bool: ...
    @property
    def realtime_base(self) -> bool: ...

def ns_to_seconds(ns: int, /) -> float: ...
def sleep_until_realtime_ns(target_ns: int, spin_ns: int, /) -> int: ...
