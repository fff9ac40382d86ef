"""Pretrained time-series foundation models, used zero-shot on the regression's residuals.

The residual series is what the straight-line clock model gets wrong (ns), one value per NTP
poll, so its spacing is irregular (64-1024 s, with gaps). These models were trained on regularly
sampled series, so an adapter first puts the series on a regular grid: linear interpolation at
the typical spacing (`regular_grid`), the grid anchored on the newest sample (the newest value
is kept exactly), and only as many grid points as the model reads. A horizon in seconds is
then a fractional number of grid steps; the forecast between two steps is interpolated
linearly, and from the newest sample to the first step it starts at the newest value with no
spread.

The models give quantiles, not moments: `mean_ns` is the median (their point forecast) and
`sigma_ns` comes from the 10-90 % range, (q90 − q10) / 2.563, which is σ for a normal
distribution. Quantiles that cross are sorted first.

Nothing here touches the network: weights come from the installed `fracast` wheel, or, for the
optional chronos-bolt and timesfm adapters, from a local directory named by an environment
variable. `load_zero_shot` is the way in: it returns `None` (with one log line saying why) for a
model whose package or weights are missing, so the daemon forecasts without it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    import fracast

log = logging.getLogger(__name__)

#: fewest samples a forecast is made from (fracast's own minimum too)
MIN_POINTS = 8
#: σ of a normal distribution from its 10-90 % quantile range: 2 × z(0.9)
_Q10_Q90_PER_SIGMA = 2.563
#: env variables naming the local weight directories of the optional models
CHRONOS_PATH_ENV = "CHRONOTICK_CHRONOS_PATH"
TIMESFM_PATH_ENV = "CHRONOTICK_TIMESFM_PATH"


@dataclasses.dataclass(frozen=True)
class ResidualForecast:
    """The residual expected `horizons_s[k]` seconds after the newest sample, and its σ (ns)."""

    horizons_s: tuple[float, ...]
    mean_ns: tuple[float, ...]
    sigma_ns: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (len(self.horizons_s) == len(self.mean_ns) == len(self.sigma_ns)):
            raise ValueError("horizons_s, mean_ns and sigma_ns must have the same length")
        if not all(math.isfinite(m) for m in self.mean_ns):
            raise ValueError(f"mean_ns must be finite, not {self.mean_ns}")
        if not all(math.isfinite(s) and s >= 0.0 for s in self.sigma_ns):
            raise ValueError(f"sigma_ns must be finite and >= 0, not {self.sigma_ns}")


class ZeroShotModel(Protocol):
    """A pretrained forecaster of the residual series, used without training on it."""

    name: str

    def forecast(
        self, t_s: np.ndarray, residual_ns: np.ndarray, horizons_s: Sequence[float]
    ) -> ResidualForecast:
        """Forecast `residual_ns` sampled at `t_s` (seconds, strictly increasing, any spacing)
        at `horizons_s` seconds after `t_s[-1]`. Raises ValueError on unusable input."""
        ...


def _validated(
    t_s: np.ndarray, residual_ns: np.ndarray, horizons_s: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(t_s, dtype=np.float64)
    r = np.asarray(residual_ns, dtype=np.float64)
    h = np.asarray(horizons_s, dtype=np.float64)
    if t.ndim != 1 or r.ndim != 1 or t.shape != r.shape:
        raise ValueError(
            f"t_s and residual_ns must be 1-D and of the same length, not {t.shape} and {r.shape}"
        )
    if t.size < MIN_POINTS:
        raise ValueError(f"a forecast needs at least {MIN_POINTS} points, not {t.size}")
    if not (np.isfinite(t).all() and np.isfinite(r).all()):
        raise ValueError("t_s and residual_ns must be finite (no NaN or inf)")
    if not (np.diff(t) > 0).all():
        raise ValueError("t_s must be strictly increasing")
    if h.ndim != 1 or h.size == 0:
        raise ValueError("horizons_s must be a non-empty sequence of seconds")
    if not (np.isfinite(h).all() and (h > 0).all()):
        raise ValueError(f"every horizon must be finite and > 0 s, not {h.tolist()}")
    return t, r, h


def regular_grid(t: np.ndarray, r: np.ndarray, max_points: int) -> tuple[np.ndarray, float]:
    """`r` at the typical poll spacing of `t`, ending on the newest sample: (values, spacing
    in s).

    The typical spacing is the median of the gaps, leaving out those under a tenth of the
    mean: several servers polled together give gaps of milliseconds between their samples,
    and a grid at those would cover seconds. At most `max_points` (the newest) and at least
    MIN_POINTS: when the spacing would give fewer, it is shortened to fit MIN_POINTS into the
    span.
    """
    span = float(t[-1] - t[0])
    gaps = np.diff(t)
    dt = float(np.median(gaps[gaps >= 0.1 * span / len(gaps)]))
    n = math.floor(span / dt * (1.0 + 1e-12)) + 1
    if n < MIN_POINTS:
        dt = span / (MIN_POINTS - 1)
        n = MIN_POINTS
    n = min(n, max_points)
    grid = t[-1] - dt * np.arange(n - 1, -1, -1, dtype=np.float64)
    return np.interp(grid, t, r), dt


class _GridAdapter:
    """Validation, regridding, horizon interpolation and σ: what every adapter shares.

    A subclass says how many grid points its model reads (`context_points`) and implements
    `_quantiles(context, steps)`, returning (median, q10, q90), each of `steps` values: the
    forecast 1..steps grid steps after the newest context value.
    """

    name: str = ""
    context_points: int = 512

    def __init__(self, *, max_steps: int = 2048, sigma_floor_ns: float = 1.0) -> None:
        if max_steps < 1 or not sigma_floor_ns >= 0.0:
            raise ValueError("max_steps must be >= 1 and sigma_floor_ns >= 0")
        #: longest horizon, in grid steps, forecast at all (longer ones are an error: the
        #: model would only be extrapolating its own forecasts)
        self.max_steps = max_steps
        #: smallest σ given (ns): the residuals are integer nanoseconds, and 1/σ² weights
        #: must stay finite even for a series the model finds perfectly predictable
        self.sigma_floor_ns = sigma_floor_ns

    def _quantiles(
        self, context: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def forecast(
        self, t_s: np.ndarray, residual_ns: np.ndarray, horizons_s: Sequence[float]
    ) -> ResidualForecast:
        t, r, h = _validated(t_s, residual_ns, horizons_s)
        values, dt = regular_grid(t, r, self.context_points)
        # the models compute in float32: hand them the series relative to its newest value,
        # so that a large offset does not eat the digits that vary
        anchor = float(values[-1])
        step_at = h / dt
        steps = max(1, math.ceil(float(step_at.max()) - 1e-9))
        if steps > self.max_steps:
            raise ValueError(
                f"horizon {float(h.max()):g} s is {steps} steps of {dt:g} s; "
                f"at most {self.max_steps} steps are forecast"
            )
        median, q10, q90 = self._quantiles(values - anchor, steps)
        stacked = np.sort(np.stack([q10, median, q90]).astype(np.float64), axis=0)
        q10, median, q90 = stacked
        at = np.arange(steps + 1, dtype=np.float64)
        mean = anchor + np.interp(step_at, at, np.concatenate(([0.0], median)))
        spread = np.interp(step_at, at, np.concatenate(([0.0], q90 - q10)))
        sigma = np.maximum(spread / _Q10_Q90_PER_SIGMA, self.sigma_floor_ns)
        return ResidualForecast(
            horizons_s=tuple(float(x) for x in h),
            mean_ns=tuple(float(x) for x in mean),
            sigma_ns=tuple(float(x) for x in sigma),
        )


def _quantile_index(levels: Sequence[float], level: float) -> int:
    for k, value in enumerate(levels):
        if abs(float(value) - level) < 1e-6:
            return k
    raise RuntimeError(f"the model gives no {level} quantile (it gives {list(levels)})")


class FracastModel(_GridAdapter):
    """Fracast-0 (PyPI `fracast`, Apache-2.0): 85 k parameters, weights inside its wheel.

    It reads the newest 2048 values (fewer are padded and masked), forecasts 48 steps per pass
    as 9 quantiles (0.1 … 0.9), and goes further by appending its median and forecasting again.
    The model is loaded once, on first use or by `load()`, from the wheel's own directory (a
    path, so the library never looks for it on a hub). `threads` caps torch's intra-op threads
    in the thread that forecasts (the daemon's worker: the model is small, one thread is about
    15 % slower than two, and the other core stays with the daemon); `None` leaves torch's
    setting alone. Note that torch also makes the number the default of threads started later.
    """

    name = "fracast"
    context_points = 2048

    def __init__(
        self,
        *,
        weights: str = "w8",
        threads: int | None = 1,
        max_steps: int = 2048,
        sigma_floor_ns: float = 1.0,
    ) -> None:
        super().__init__(max_steps=max_steps, sigma_floor_ns=sigma_floor_ns)
        if weights not in ("w8", "fp32"):
            raise ValueError(f"fracast weights are 'w8' or 'fp32', not {weights!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, not {threads}")
        self.weights = weights
        self.threads = threads
        self._model: fracast.FracastModel | None = None
        self._lock = threading.Lock()

    @staticmethod
    def weights_dir() -> Path:
        """The installed package's weight directory, found without importing the package
        (which imports torch: seconds). ImportError without fracast."""
        spec = importlib.util.find_spec("fracast")
        if spec is None or spec.origin is None:
            raise ImportError("package 'fracast' is not installed")
        return Path(spec.origin).resolve().parent / "weights"

    def check(self) -> Path:
        """That the package and the weight files are there, without loading anything: what
        a daemon can say at start, in milliseconds. Returns the weight directory;
        ImportError / FileNotFoundError."""
        directory = self.weights_dir()
        data = "model.int8.safetensors" if self.weights == "w8" else "model.safetensors"
        needed = ("config.json", data) + (("w8_manifest.json",) if self.weights == "w8" else ())
        missing = [name for name in needed if not (directory / name).is_file()]
        if missing:
            raise FileNotFoundError(f"fracast weights missing in {directory}: {missing}")
        return directory

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (a daemon loads them by its first forecast)."""
        return self._model is not None

    def load(self) -> None:
        """Load the bundled weights (once). ImportError / FileNotFoundError when missing."""
        with self._lock:
            if self._model is not None:
                return
            directory = self.check()
            import fracast

            self._model = fracast.FracastModel.from_pretrained(
                directory, weights=self.weights, device="cpu"
            )

    def _quantiles(
        self, context: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        self.load()
        model = self._model
        assert model is not None
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.no_grad():
            q = np.asarray(model.forecast(context.astype(np.float32), horizon=steps))
        levels = model.quantiles
        return (
            q[:, _quantile_index(levels, 0.5)],
            q[:, _quantile_index(levels, 0.1)],
            q[:, _quantile_index(levels, 0.9)],
        )


def _force_offline() -> None:
    """Tell huggingface_hub and transformers (read when they are imported) never to download."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


class ChronosBoltModel(_GridAdapter):
    """Chronos-Bolt (PyPI `chronos-forecasting`) from a local directory of its weights.

    Minimal and untested here: neither the package nor weights are installed on this project's
    machines (and weights are never downloaded), so only its unavailable path is tested. It
    follows the package's documented `BaseChronosPipeline.from_pretrained` / `predict_quantiles`.
    """

    name = "chronos-bolt"
    context_points = 2048

    def __init__(self, path: Path, *, max_steps: int = 1024, sigma_floor_ns: float = 1.0) -> None:
        super().__init__(max_steps=max_steps, sigma_floor_ns=sigma_floor_ns)
        _force_offline()
        import torch
        from chronos import BaseChronosPipeline

        self._torch = torch
        self._pipeline = BaseChronosPipeline.from_pretrained(
            str(path), device_map="cpu", local_files_only=True
        )

    def _quantiles(
        self, context: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._torch.no_grad():
            q, _mean = self._pipeline.predict_quantiles(
                self._torch.tensor(context, dtype=self._torch.float32)[None, :],
                prediction_length=steps,
                quantile_levels=[0.1, 0.5, 0.9],
            )
        values = np.asarray(q[0].cpu().numpy(), dtype=np.float64)
        return values[:, 1], values[:, 0], values[:, 2]


class TimesFmModel(_GridAdapter):
    """TimesFM 2.5 (PyPI `timesfm`, torch build) from a local directory of its weights.

    Minimal and untested here, like `ChronosBoltModel`: it follows the package's documented
    `TimesFM_2p5_200M_torch.from_pretrained` / `compile(ForecastConfig)` / `forecast`, whose
    quantile output holds the mean and then the 0.1 … 0.9 quantiles.
    """

    name = "timesfm"
    context_points = 1024

    def __init__(self, path: Path, *, max_steps: int = 1024, sigma_floor_ns: float = 1.0) -> None:
        super().__init__(max_steps=max_steps, sigma_floor_ns=sigma_floor_ns)
        _force_offline()
        import timesfm

        self._model = timesfm.TimesFM_2p5_200M_torch.from_pretrained(str(path))
        self._model.compile(
            timesfm.ForecastConfig(
                max_context=self.context_points,
                max_horizon=max_steps,
                normalize_inputs=True,
                use_continuous_quantile_head=True,
                fix_quantile_crossing=True,
            )
        )

    def _quantiles(
        self, context: np.ndarray, steps: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _point, q = self._model.forecast(horizon=steps, inputs=[context])
        values = np.asarray(q, dtype=np.float64)[0]
        return values[:, 5], values[:, 1], values[:, 9]


def _load_fracast() -> ZeroShotModel:
    # checked now, loaded by its first forecast: importing fracast (torch, torch._dynamo) takes
    # seconds of CPU, which a daemon would otherwise spend before its first publication, and
    # which the training thread spends instead, only once there is a forecast to make
    model = FracastModel()
    model.check()
    return model


def _local_weights(package: str, env: str, build: Callable[[Path], ZeroShotModel]) -> ZeroShotModel:
    reasons = []
    if importlib.util.find_spec(package) is None:
        reasons.append(f"package {package!r} is not installed")
    where = os.environ.get(env)
    if not where:
        reasons.append(f"no local weights: {env} is not set")
    elif not Path(where).is_dir():
        reasons.append(f"no local weights: {env}={where} is not a directory")
    if reasons:
        raise FileNotFoundError("; ".join(reasons))
    assert where is not None
    return build(Path(where))


_LOADERS: dict[str, Callable[[], ZeroShotModel]] = {
    "fracast": _load_fracast,
    "chronos-bolt": lambda: _local_weights("chronos", CHRONOS_PATH_ENV, ChronosBoltModel),
    "timesfm": lambda: _local_weights("timesfm", TIMESFM_PATH_ENV, TimesFmModel),
}
#: the names `load_zero_shot` knows
KNOWN_MODELS: tuple[str, ...] = tuple(_LOADERS)


def load_zero_shot(name: str) -> ZeroShotModel | None:
    """The zero-shot model called `name`, loaded, or None (logged once) when it can't be had.

    Never downloads and never raises for a missing package or missing weights: the daemon then
    forecasts without the model. An unknown name is a configuration error: ValueError.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise ValueError(f"unknown zero-shot model {name!r}; known: {', '.join(KNOWN_MODELS)}")
    try:
        return loader()
    except Exception as exc:  # a missing or broken optional model must not stop the daemon
        reason = str(exc) or type(exc).__name__
        if not isinstance(exc, (ImportError, FileNotFoundError)):
            reason = f"{type(exc).__name__}: {reason}"
        log.warning("zero-shot model %s unavailable (%s); forecasting without it", name, reason)
        return None
