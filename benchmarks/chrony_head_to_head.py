"""Head-to-head with chrony: the daemon and `chronyd -x` track the same drifting clock.

    .venv/bin/python benchmarks/chrony_head_to_head.py [--duration S] [--poll N] [--quick]

One embedded NTP server (chronotick.ntp.server) on loopback serves a reference clock whose
offset and rate change during the run: `reference(t) = t + offset + ∫ rate`, with the rate
piecewise constant (by default +20 ppm, then -30 ppm from the middle of the run), where t is
this host's CLOCK_REALTIME. The truth at any instant is therefore known exactly:
`truth(t) = reference(t) - t`, the offset of the reference from the system clock. The skew is
in the reference rather than in the client, so no client runs under libfaketime (chronyd's
polling stalled there).

Two clients measure that server through the same NTP path, with the same poll interval
(2^N s), one exchange per poll and a four-exchange start 2 s apart (chrony's `iburst`, the
daemon's warm-up):

- ChronoTick: `python -m chronotick.daemon.cli --min-poll 2^N --max-poll 2^N --burst 1`; its
  estimate is read with `ChronoTickClient.get_time()`: `corrected_time_ns - system_time_ns`,
  scored against `truth(system_time_ns)`.
- chronyd: `chronyd -x -d` (client only: `port 0`, no clock control), `server 127.0.0.1 port P
  minpoll N maxpoll N iburst`, its command socket a unix socket in a private directory. With
  `-x` chronyd drives a virtual clock (its "null" clock driver): the slews and frequency changes
  it would make are kept in a register, `cooked(t) = t + correction(t)`, and never applied to
  the real clock. `chronyc tracking` reports that whole correction as "System time" ("X seconds
  slow of NTP time": the CSV form `chronyc -c tracking`, field 5, is signed, positive when slow),
  evaluated when chronyd answers, including the frequency part accrued since the last update.
  So chronyd's estimate of `reference - system` is that field, at an instant between the
  CLOCK_REALTIME readings taken right before and after `chronyc` ran; it is scored against the
  truth at their midpoint (the reference's rate moves the truth by < 0.1 µs over the few ms a
  `chronyc` call takes). Checked on a constant offset (+50 ms, 0 ppm: chronyd reads +50.0x ms)
  and on a steady drift (the error does not grow between chronyd's updates).

Both are sampled every `--sample-interval` seconds after `--warmup`, and only while ready
(ChronoTick SYNCHRONIZED, chronyd's leap status Normal; samples where either was not ready are
counted). Printed: per phase (before and after the rate change) and over the whole run, for each
estimator N, signed mean, SD, mean |error|, RMS, max |error|, how often its error bound held
(ChronoTick's error_bound; chronyd's root dispersion + root delay / 2, the bound chronyc's
documentation gives once the clock's own correction is applied), and the ratios
chronotick / chronyd of RMS and mean |error|. `--json FILE` writes the same figures.

Every process, the temporary directory and the shared-memory segment (and its lock file) are
removed at exit, also on an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from chronotick.client import ChronoTickClient  # noqa: E402
from chronotick.ntp.server import NtpServer  # noqa: E402
from chronotick.shm import SHM_DIR, ShmError  # noqa: E402
from chronotick.status import ClockStatus  # noqa: E402

NS_PER_S = 1_000_000_000
US = 1_000
CHRONOTICK = "chronotick"
CHRONYD = "chronyd"
ESTIMATORS = (CHRONOTICK, CHRONYD)


# -- the reference ----------------------------------------------------------------------------


class PiecewiseRateClock:
    """`reference(t) = t + offset + ∫ rate`, the rate piecewise constant in time since `epoch`.

    `segments` are (start in seconds after the epoch, rate in ppm), the first starting at 0; the
    first rate also applies before the epoch. The reference is continuous: a rate change bends
    the offset's line, it does not step it.
    """

    def __init__(
        self,
        epoch_ns: int,
        offset_ns: int,
        segments: list[tuple[float, float]],
        base_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if not segments or segments[0][0] != 0.0:
            raise ValueError("the first segment must start at 0 s")
        starts = [start for start, _ in segments]
        if starts != sorted(starts):
            raise ValueError("segments must be in order")
        self.epoch_ns = epoch_ns
        self.offset_ns = offset_ns
        self.segments = [(round(start * NS_PER_S), rate * 1e-6) for start, rate in segments]
        self._base_ns = base_ns

    def truth_ns(self, system_ns: int) -> int:
        """reference(t) - t for a system-clock reading t: the true offset to estimate."""
        elapsed = system_ns - self.epoch_ns
        accrued = self.segments[0][1] * elapsed if elapsed < 0 else 0.0
        ends = [start for start, _ in self.segments[1:]] + [max(elapsed, 0)]
        for (start, rate), end in zip(self.segments, ends, strict=True):
            if elapsed <= start:
                break
            accrued += rate * (min(elapsed, end) - start)
        return self.offset_ns + round(accrued)

    def rate_ppm(self, system_ns: int) -> float:
        elapsed = system_ns - self.epoch_ns
        current = self.segments[0][1]
        for start, rate in self.segments:
            if elapsed >= start:
                current = rate
        return current * 1e6

    def at(self, system_ns: int) -> int:
        return system_ns + self.truth_ns(system_ns)

    def now_ns(self) -> int:
        return self.at(self._base_ns())


# -- the two clients --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reading:
    """One estimate of `reference - system`, scored: all in ns."""

    elapsed_s: float
    estimate_ns: int
    truth_ns: int
    bound_ns: float
    rate_ppm: float  # the estimator's own rate estimate of d(reference - system)/dt

    @property
    def error_ns(self) -> int:
        return self.estimate_ns - self.truth_ns


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""


class Chronyd:
    """`chronyd -x -d` as a client of one server, and its tracking report through chronyc."""

    def __init__(self, workdir: Path, port: int, poll: int) -> None:
        self.chronyd = shutil.which("chronyd") or shutil.which("chronyd", path="/usr/sbin:/sbin")
        self.chronyc = shutil.which("chronyc") or shutil.which("chronyc", path="/usr/sbin:/sbin")
        if self.chronyd is None or self.chronyc is None:
            raise RuntimeError("chronyd and chronyc are needed (apt-get install chrony)")
        self.dir = workdir / "chrony"
        self.dir.mkdir(mode=0o700)
        self.socket = self.dir / "chronyd.sock"
        self.conf = self.dir / "chrony.conf"
        self.log_path = self.dir / "chronyd.log"
        self.conf.write_text(
            f"server 127.0.0.1 port {port} minpoll {poll} maxpoll {poll} iburst\n"
            "port 0\n"  # a client only: no NTP server socket
            "cmdport 0\n"  # no UDP command port; the unix socket below only
            f"bindcmdaddress {self.socket}\n"
            f"pidfile {self.dir / 'chronyd.pid'}\n"
            f"logdir {self.dir}\n"
            "log tracking statistics measurements\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.chronyd is not None
        # chronyd runs as (and checks that the socket's directory belongs to) its compiled-in
        # user unless told otherwise: that user may not even enter our private directory. So
        # it stays ours; -U lets a non-root user start it (with -x nothing needs privileges).
        user = ["-u", pwd.getpwuid(os.geteuid()).pw_name]
        if os.geteuid() != 0:
            user.append("-U")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.chronyd, "-x", "-d", *user, "-f", str(self.conf)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"chronyd opened no command socket:\n{tail(self.log_path)}")
            time.sleep(0.05)

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"chronyd exited:\n{tail(self.log_path)}")

    def stop(self) -> None:
        stop_process(self.proc)

    def tracking(self) -> tuple[list[str], int, int]:
        """`chronyc -c tracking` fields, with CLOCK_REALTIME right before and after."""
        assert self.chronyc is not None
        before = time.time_ns()
        done = subprocess.run(
            [self.chronyc, "-c", "-h", str(self.socket), "tracking"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        after = time.time_ns()
        fields = done.stdout.strip().split(",")
        if done.returncode != 0 or len(fields) < 14:
            raise RuntimeError(f"chronyc tracking failed: {done.stdout}{done.stderr}")
        return fields, before, after

    def read(self, reference: PiecewiseRateClock, epoch_ns: int) -> Reading | str:
        """chronyd's estimate of reference - system, or its leap status if not Normal."""
        fields, before, after = self.tracking()
        if fields[13] != "Normal":  # "Not synchronised" until the first update
            return fields[13]
        mid = (before + after) // 2
        # field 5, "System time": the virtual clock's whole correction, positive when the
        # system clock is slow of NTP time, i.e. an estimate of reference - system
        estimate = round(float(fields[4]) * NS_PER_S)
        bound = (float(fields[11]) + float(fields[10]) / 2) * NS_PER_S
        return Reading(
            elapsed_s=(mid - epoch_ns) / NS_PER_S,
            estimate_ns=estimate,
            truth_ns=reference.truth_ns(mid),
            bound_ns=bound,
            # "Frequency": ppm, negative when the system clock is slow, i.e. -d(ref - sys)/dt
            rate_ppm=-float(fields[7]),
        )


class ChronoTickDaemon:
    """The daemon as a subprocess (`python -m chronotick.daemon.cli`) and a client of it."""

    def __init__(self, workdir: Path, port: int, poll: int) -> None:
        self.shm_name = f"h2h-{uuid.uuid4().hex[:10]}"
        self.log_path = workdir / "chronotick-daemon.log"
        interval = str(2**poll)
        self.argv = [
            sys.executable,
            "-m",
            "chronotick.daemon.cli",
            "--server",
            f"127.0.0.1:{port}",
            "--min-poll",
            interval,
            "--max-poll",
            interval,
            "--burst",
            "1",
            "--shm-name",
            self.shm_name,
            "--log-level",
            "warning",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: ChronoTickClient | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = ChronoTickClient(self.shm_name)

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"the chronotick daemon exited:\n{tail(self.log_path)}")

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        stop_process(self.proc)
        # The daemon removes its segment on SIGTERM; whatever a crash left behind goes too.
        for entry in (self.shm_name, f".{self.shm_name}.lock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, entry))
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(SHM_DIR):
                if entry.startswith(f".{self.shm_name}.") and entry.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(SHM_DIR, entry))

    def read(self, reference: PiecewiseRateClock, epoch_ns: int) -> Reading | str:
        """The daemon's estimate of reference - system, or why there is none (not SYNCHRONIZED:
        its status, or the client's error while the segment is missing or stale)."""
        assert self.client is not None
        try:
            info = self.client.get_time()
        except ShmError as exc:
            return type(exc).__name__
        if info.status is not ClockStatus.SYNCHRONIZED:
            return info.status.name
        t = info.system_time_ns
        return Reading(
            elapsed_s=(t - epoch_ns) / NS_PER_S,
            estimate_ns=info.corrected_time_ns - t,
            truth_ns=reference.truth_ns(t),
            bound_ns=info.error_bound_seconds * NS_PER_S,
            rate_ppm=info.drift_rate * 1e6,
        )


# -- scoring ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stats:
    n: int
    mean_ns: float
    sd_ns: float
    mean_abs_ns: float
    rms_ns: float
    max_abs_ns: float
    bound_held: float  # fraction of readings with |error| <= bound

    @classmethod
    def of(cls, readings: list[Reading]) -> Stats:
        n = len(readings)
        if n == 0:
            nan = math.nan
            return cls(0, nan, nan, nan, nan, nan, nan)
        errors = [float(r.error_ns) for r in readings]
        mean = sum(errors) / n
        sd = math.sqrt(sum((e - mean) ** 2 for e in errors) / (n - 1)) if n > 1 else 0.0
        held = sum(1 for r in readings if abs(r.error_ns) <= r.bound_ns) / n
        return cls(
            n=n,
            mean_ns=mean,
            sd_ns=sd,
            mean_abs_ns=sum(abs(e) for e in errors) / n,
            rms_ns=math.sqrt(sum(e * e for e in errors) / n),
            max_abs_ns=max(abs(e) for e in errors),
            bound_held=held,
        )


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else math.nan


@dataclasses.dataclass(frozen=True)
class Settings:
    duration_s: float
    poll: int
    warmup_s: float
    sample_interval_s: float
    offset_ms: float
    rate_ppm: float
    rate_after_ppm: float
    change_at_s: float | None
    settle_us: float = 100.0


def run(settings: Settings, workdir: Path, out: TextIO) -> dict[str, Any]:
    # One timeline: the warm-up, the duration, the rate change and every sample's elapsed time
    # count from the reference's epoch.
    epoch, begin = time.time_ns(), time.monotonic()
    segments = [(0.0, settings.rate_ppm)]
    if settings.change_at_s is not None:
        segments.append((settings.change_at_s, settings.rate_after_ppm))
    reference = PiecewiseRateClock(epoch, round(settings.offset_ms * 1e6), segments)
    readings: dict[str, list[Reading]] = {name: [] for name in ESTIMATORS}
    not_ready: dict[str, list[tuple[float, str]]] = {name: [] for name in ESTIMATORS}
    with NtpServer(reference, host="127.0.0.1", port=0) as server:
        port = server.address[1]
        chrony = Chronyd(workdir, port, settings.poll)
        daemon = ChronoTickDaemon(workdir, port, settings.poll)
        try:
            chrony.start()
            daemon.start()
            next_sample = begin + settings.warmup_s
            end = begin + settings.duration_s
            print(
                f"warming up for {settings.warmup_s:g} s, then sampling every "
                f"{settings.sample_interval_s:g} s until {settings.duration_s:g} s",
                file=out,
                flush=True,
            )
            last_progress = begin
            while True:
                daemon.check()
                chrony.check()
                now = time.monotonic()
                if now >= end:
                    break
                if now < next_sample:  # in short naps: a process that died is seen at once
                    time.sleep(min(next_sample, end, now + 0.5) - now)
                    continue
                next_sample += settings.sample_interval_s
                ours = daemon.read(reference, epoch)
                theirs = chrony.read(reference, epoch)
                for name, reading in ((CHRONOTICK, ours), (CHRONYD, theirs)):
                    if isinstance(reading, str):
                        not_ready[name].append((round(now - begin, 1), reading))
                    else:
                        readings[name].append(reading)
                if now - last_progress >= 60:
                    last_progress = now
                    print(progress(now - begin, reference, readings), file=out, flush=True)
        finally:
            with signals_ignored():
                daemon.stop()
                chrony.stop()
        answered = server.stats.answered
    return report(settings, readings, not_ready, answered, out)


def progress(
    elapsed_s: float, reference: PiecewiseRateClock, readings: dict[str, list[Reading]]
) -> str:
    truth_ms = reference.truth_ns(time.time_ns()) / 1e6
    last = ", ".join(
        f"{name} {rs[-1].error_ns / US:+.1f} µs" for name, rs in readings.items() if rs
    )
    return f"  {elapsed_s:5.0f} s: truth {truth_ms:+.3f} ms; last errors: {last or 'none yet'}"


def phases(settings: Settings, readings: list[Reading]) -> dict[str, list[Reading]]:
    out = {"whole run": readings}
    if settings.change_at_s is not None:
        at = settings.change_at_s
        out[f"before the change (< {at:g} s)"] = [r for r in readings if r.elapsed_s < at]
        out[f"after the change (>= {at:g} s)"] = [r for r in readings if r.elapsed_s >= at]
    return out


def spans(gaps: list[tuple[float, str]]) -> str:
    """[(12.0, "UNKNOWN"), (13.0, "UNKNOWN"), (40.0, "X")] -> "UNKNOWN 12-13 s, X 40 s"."""
    runs: list[tuple[str, float, float]] = []
    for at, why in gaps:
        if runs and runs[-1][0] == why:
            runs[-1] = (why, runs[-1][1], at)
        else:
            runs.append((why, at, at))
    return ", ".join(
        f"{why} {first:g} s" if first == last else f"{why} {first:g}-{last:g} s"
        for why, first, last in runs
    )


def settling(readings: list[Reading], change_at_s: float, settle_us: float) -> dict[str, Any]:
    """After the change: the peak |error|, and how long until |error| <= settle_us for good
    (None: not by the end of the run; 0: it never left)."""
    after = [r for r in readings if r.elapsed_s >= change_at_s]
    if not after:
        return {"peak_abs_ns": math.nan, "settled_after_s": None}
    settled: float | None = 0.0
    for i, r in enumerate(after):
        if abs(r.error_ns) > settle_us * US:
            settled = after[i + 1].elapsed_s - change_at_s if i + 1 < len(after) else None
    return {"peak_abs_ns": float(max(abs(r.error_ns) for r in after)), "settled_after_s": settled}


def fmt_us(ns: float) -> str:
    return f"{ns / US:9.1f}" if math.isfinite(ns) else f"{'-':>9}"


def report(
    settings: Settings,
    readings: dict[str, list[Reading]],
    not_ready: dict[str, list[tuple[float, str]]],
    answered: int,
    out: TextIO,
) -> dict[str, Any]:
    split = {name: phases(settings, rs) for name, rs in readings.items()}
    stats = {
        name: {phase: Stats.of(rs) for phase, rs in by_phase.items()}
        for name, by_phase in split.items()
    }
    print(
        f"\nerrors of the estimate of reference - system (µs); NTP requests answered: {answered}",
        file=out,
    )
    header = (
        f"{'phase':<28} {'estimator':<10} {'N':>4} {'mean':>9} {'SD':>9} {'mean|e|':>9} "
        f"{'RMS':>9} {'max|e|':>9} {'bound held':>10}"
    )
    print(header, file=out)
    for phase in stats[CHRONOTICK]:
        for name in ESTIMATORS:
            s = stats[name][phase]
            held = f"{100 * s.bound_held:9.1f}%" if s.n else f"{'-':>10}"
            print(
                f"{phase:<28} {name:<10} {s.n:4d} {fmt_us(s.mean_ns)} {fmt_us(s.sd_ns)} "
                f"{fmt_us(s.mean_abs_ns)} {fmt_us(s.rms_ns)} {fmt_us(s.max_abs_ns)} {held}",
                file=out,
            )
    for name in ESTIMATORS:
        rate = f"{readings[name][-1].rate_ppm:+.3f} ppm" if readings[name] else "none"
        gaps = not_ready[name]
        print(
            f"{name}: rate estimate at the end {rate}; not ready at {len(gaps)} samples"
            + (f" ({spans(gaps)})" if gaps else ""),
            file=out,
        )
    recovery = {}
    if settings.change_at_s is not None:
        for name in ESTIMATORS:
            recovery[name] = settling(readings[name], settings.change_at_s, settings.settle_us)
            peak, settled = recovery[name]["peak_abs_ns"], recovery[name]["settled_after_s"]
            print(
                f"{name} after the rate change: peak |error| {fmt_us(peak).strip()} µs; "
                f"within {settings.settle_us:g} µs for good "
                + (f"{settled:.0f} s after it" if settled is not None else "never"),
                file=out,
            )
    ratios = {}
    for phase in stats[CHRONOTICK]:
        ours, theirs = stats[CHRONOTICK][phase], stats[CHRONYD][phase]
        ratios[phase] = {
            "rms": ratio(ours.rms_ns, theirs.rms_ns),
            "mean_abs": ratio(ours.mean_abs_ns, theirs.mean_abs_ns),
        }
        print(
            f"ratio chronotick/chronyd, {phase}: RMS {ratios[phase]['rms']:.2f}, "
            f"mean |error| {ratios[phase]['mean_abs']:.2f}",
            file=out,
            flush=True,
        )
    return {
        "settings": dataclasses.asdict(settings),
        "ntp_requests_answered": answered,
        "not_ready": not_ready,
        "stats": {
            name: {phase: dataclasses.asdict(s) for phase, s in by_phase.items()}
            for name, by_phase in stats.items()
        },
        "ratios": ratios,
        "recovery": recovery,
        "final_rate_ppm": {name: rs[-1].rate_ppm if rs else None for name, rs in readings.items()},
        "readings": {
            name: [dataclasses.asdict(r) | {"error_ns": r.error_ns} for r in rs]
            for name, rs in readings.items()
        },
    }


# -- command line -----------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM, turned into an exception so that every `finally` cleans up."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Let a second Ctrl-C or SIGTERM not cut the cleanup short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def chronyd_version() -> str:
    binary = shutil.which("chronyd") or shutil.which("chronyd", path="/usr/sbin:/sbin")
    if binary is None:
        return "chronyd not found"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    found = re.search(r"version (\S+)", done.stdout)
    return f"chronyd {found.group(1)}" if found else "chronyd of unknown version"


def parse_args(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 2-minute run: 4 s polls (the test)")
    p.add_argument("--duration", type=float, help="seconds of wall time (600; quick: 120)")
    p.add_argument("--poll", type=int, help="poll interval, log2 seconds, for both (4; quick: 2)")
    p.add_argument("--warmup", type=float, help="seconds before scoring starts (120; quick: 30)")
    p.add_argument("--sample-interval", type=float, help="seconds between samples (2; quick: 1)")
    p.add_argument("--offset-ms", type=float, default=50.0, help="reference - system at start")
    p.add_argument("--rate-ppm", type=float, default=20.0, help="reference rate at first")
    p.add_argument("--rate-after-ppm", type=float, default=-30.0, help="rate after the change")
    p.add_argument(
        "--change-at",
        type=float,
        default=0.5,
        help="when the rate changes, as a fraction of the duration (>= 1: never)",
    )
    p.add_argument(
        "--settle-us",
        type=float,
        default=100.0,
        help="after the change, report when |error| stays under this (µs)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures and every sample here")
    p.add_argument("--keep-logs", metavar="DIR", help="copy chronyd's and the daemon's logs here")
    args = p.parse_args(argv)
    quick = args.quick
    settings = Settings(
        duration_s=args.duration if args.duration is not None else (120.0 if quick else 600.0),
        poll=args.poll if args.poll is not None else (2 if quick else 4),
        warmup_s=args.warmup if args.warmup is not None else (30.0 if quick else 120.0),
        sample_interval_s=(
            args.sample_interval if args.sample_interval is not None else (1.0 if quick else 2.0)
        ),
        offset_ms=args.offset_ms,
        rate_ppm=args.rate_ppm,
        rate_after_ppm=args.rate_after_ppm,
        change_at_s=None,
        settle_us=args.settle_us,
    )
    duration = settings.duration_s
    if not 10 <= duration <= 86400:
        p.error("--duration must be 10 s to a day")
    if not 0 <= settings.poll <= 10:
        p.error("--poll must be 0..10 (1 s to 1024 s; the daemon polls every 1 s at most)")
    if not 0 <= settings.warmup_s < duration:
        p.error("--warmup must be within the duration")
    if not 0.1 <= settings.sample_interval_s <= duration:
        p.error("--sample-interval must be at least 0.1 s")
    for name in ("offset_ms", "rate_ppm", "rate_after_ppm", "change_at", "settle_us"):
        if not math.isfinite(getattr(args, name)):
            p.error(f"--{name.replace('_', '-')} must be finite")
    if abs(settings.rate_ppm) > 500 or abs(settings.rate_after_ppm) > 500:
        p.error("rates must be within ±500 ppm (chrony's default maxdrift)")
    if 0 < args.change_at < 1:
        settings = dataclasses.replace(settings, change_at_s=round(args.change_at * duration, 1))
    elif args.change_at <= 0:
        p.error("--change-at must be a fraction of the duration, > 0")
    return settings, args


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    change = (
        f"{settings.rate_after_ppm:+g} ppm from {settings.change_at_s:g} s"
        if settings.change_at_s is not None
        else "no change"
    )
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {chronyd_version()}; "
        f"Python {platform.python_version()}; {os.cpu_count()} CPUs",
        flush=True,
    )
    print(
        f"reference: {settings.offset_ms:+g} ms, {settings.rate_ppm:+g} ppm, then {change}; "
        f"both poll every {2**settings.poll} s (chrony poll {settings.poll}), one exchange "
        f"per poll; {settings.duration_s:g} s",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="chronotick-h2h-"))
    try:
        with sigterm_raises():
            result = run(settings, workdir, sys.stdout)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: everything started was stopped and removed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"chrony_head_to_head: {exc}", file=sys.stderr)
        return 1
    finally:
        with signals_ignored():
            if args.keep_logs:
                keep = Path(args.keep_logs)
                keep.mkdir(parents=True, exist_ok=True)
                for path in workdir.rglob("*.log"):
                    shutil.copy2(path, keep / path.name)
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, allow_nan=True))
    return 0 if all(result["stats"][name]["whole run"]["n"] for name in ESTIMATORS) else 1


if __name__ == "__main__":
    sys.exit(main())
