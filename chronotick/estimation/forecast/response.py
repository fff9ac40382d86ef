"""The clock's frequency as a function of the host's conditions, learnt from measurements.

A straight line through recent samples assumes the frequency holds still; a quartz crystal's
frequency follows its temperature (a parabola around its turnover point) and the temperature
follows the load. Where a host reports them, the offset is modelled as

    offset(t) = a + b·t + ∫ g(x(s)) ds,

with x the covariates and g the frequency response: a quadratic in temperature and a linear
term in load (the physics), plus a small torch network for what the quadratic misses. The
linear parameters (a, b and the polynomial's coefficients) are solved exactly by weighted
least squares for the network's current output (variable projection), so the model is
useful from the first fit; the network is trained online by a few optimizer steps per
update, and only its parameters carry over between fits.

Trained only on accepted measurements (never on anything the daemon published), over a
bounded window whose older samples count less (`memory_s`); a cubic baseline in time takes up
the slow wander, so the response is learnt from what the conditions explain. A covariate that
did not move over the window is left out; with none left, the model explains nothing and the
predictor does without it.

Pure: `fit` takes samples and a covariate grid and returns a `ResponseFit` of plain numpy
values that evaluates in microseconds, so the daemon can train on a worker thread and
publish from the snapshot.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from chronotick.estimation.forecast.covariates import NAMES, CovariateHistory
from chronotick.estimation.samples import Sample
from chronotick.model import NS_PER_S

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: scale of temperature features: the polynomial is in (T − T̄)/10 °C
_TEMPERATURE_SCALE_C = 10.0
#: the baseline's polynomial in time (1, t, t², t³): it takes up the slow wander of the
#: frequency over the window, so the response is learnt from what the conditions explain
BASELINE_TERMS = 4
#: the spread a covariate must show over the window to be used (°C, share of the CPUs)
MIN_SPREAD = (0.05, 0.02)


@dataclasses.dataclass(frozen=True)
class ResponseConfig:
    #: how far back samples are used, and how many at most
    window_s: float = 6 * 3600.0
    max_samples: int = 256
    min_samples: int = 12
    #: time constant of the samples' weights: older samples count e^(−age/memory) as much
    memory_s: float = 2 * 3600.0
    #: the network's hidden units (0: the polynomial response only) and its training
    hidden_units: int = 8
    train_steps: int = 6
    learning_rate: float = 0.01
    weight_decay: float = 1e-2
    #: ridge on the linear coefficients (in units of their normalized columns)
    ridge: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.window_s > 0 and self.memory_s > 0):
            raise ValueError("window_s and memory_s must be positive")
        if self.min_samples < 4 or self.max_samples < self.min_samples:
            raise ValueError("need 4 <= min_samples <= max_samples")
        if self.hidden_units < 0 or self.train_steps < 0:
            raise ValueError("hidden_units and train_steps must be >= 0")


@dataclasses.dataclass(frozen=True)
class ResponseFit:
    """A fitted response: evaluates the offset at any instant the covariate grid reaches."""

    origin_ns: int
    #: which covariates the features use, and the temperature the polynomial is centred on
    uses: tuple[bool, ...]
    temperature_ref_c: float
    load_ref: float
    #: coefficients over [1, t_s, Φ…] and their covariance (ns², in the same basis)
    coef: FloatArray
    cov: FloatArray
    #: the network as numpy arrays (None: no network)
    mlp: tuple[FloatArray, FloatArray, FloatArray] | None
    noise_scale2: float
    #: the residuals' variance per unit of a sample's relative variance: a sample's own noise
    #: is this times its relative variance
    noise_per_unit_ns2: float
    last_sample_ns: int
    samples: int
    #: weighted in-sample RMS residual, ns
    rms_ns: float

    def features(self, x: FloatArray) -> FloatArray:
        """Polynomial features of covariate rows x (columns as `NAMES`)."""
        columns = []
        if self.uses[0]:
            u = (x[:, 0] - self.temperature_ref_c) / _TEMPERATURE_SCALE_C
            columns += [u, u * u]
        if self.uses[1]:
            columns.append(x[:, 1] - self.load_ref)
        return np.stack(columns, axis=1) if columns else np.zeros((len(x), 0))

    def network_ppb(self, x: FloatArray) -> FloatArray:
        if self.mlp is None:
            return np.zeros(len(x))
        w1, b1, w2 = self.mlp
        return np.asarray(np.tanh(_inputs(x, self) @ w1 + b1) @ w2, dtype=np.float64)

    def response_ppb(self, x: FloatArray) -> FloatArray:
        """The part of d(offset)/dt that the conditions x explain, ppb (the clock's frequency
        error is its negative)."""
        return self.features(x) @ self.coef[BASELINE_TERMS:] + self.network_ppb(x)

    @property
    def explains(self) -> bool:
        """Whether the conditions explain anything (a host without sensors: no)."""
        return any(self.uses)

    def conditions_ns(self, t_ns: int, history: CovariateHistory) -> tuple[float, float]:
        """(the offset the conditions explain, relative to the fit's newest sample, ns; the
        rate they explain at t, ppb): ∫ from the newest sample to t of the response."""
        explained, rates = self.conditions_many([t_ns], history)
        return float(explained[0]), float(rates[0])

    def conditions_many(
        self, t_ns: Sequence[int], history: CovariateHistory
    ) -> tuple[FloatArray, FloatArray]:
        """`conditions_ns` at several instants, over one grid."""
        zeros = np.zeros(len(t_ns))
        if not self.explains or not len(t_ns):
            return zeros, zeros
        grid = Grid.from_history(history, self.origin_ns, since_ns=min(min(t_ns), self.origin_ns))
        if not len(grid.start_s):
            return zeros, zeros
        t_s = (np.asarray(t_ns, dtype=np.int64) - self.origin_ns) / NS_PER_S
        response = self.response_ppb(grid.values)
        # the rate at t: the cell that holds at t
        at = np.maximum(np.searchsorted(grid.start_s, t_s, "right") - 1, 0)
        return grid.integral_weights(t_s) @ response, response[at]

    def temperature_response(self) -> tuple[float, float] | None:
        """(k ppm/°C², turnover °C) of the clock's frequency, as the polynomial learnt it
        (None without temperature, or when the curvature is not significant)."""
        if not self.uses[0]:
            return None
        w1, w2 = float(self.coef[BASELINE_TERMS]), float(self.coef[BASELINE_TERMS + 1])
        if w2 == 0.0:
            return None
        # frequency = −(offset slope) = −(baseline + w1·u + w2·u²), u = (T − T̄)/10
        k_ppm = -w2 / (_TEMPERATURE_SCALE_C**2) / 1000.0
        turnover = self.temperature_ref_c - w1 * _TEMPERATURE_SCALE_C / (2.0 * w2)
        return k_ppm, turnover


def _inputs(x: FloatArray, fit: ResponseFit | _Basis) -> FloatArray:
    """The network's inputs: the covariates it uses, centred and scaled."""
    columns = []
    if fit.uses[0]:
        columns.append((x[:, 0] - fit.temperature_ref_c) / _TEMPERATURE_SCALE_C)
    if fit.uses[1]:
        columns.append(x[:, 1] - fit.load_ref)
    return np.stack(columns, axis=1) if columns else np.zeros((len(x), 0))


@dataclasses.dataclass(frozen=True)
class _Basis:
    uses: tuple[bool, ...]
    temperature_ref_c: float
    load_ref: float


@dataclasses.dataclass(frozen=True)
class Grid:
    """Covariate cells: start times (s from an origin), widths (s) and values (rows)."""

    start_s: FloatArray
    width_s: FloatArray
    values: FloatArray  # (cells, len(NAMES)); NaN where unknown

    @classmethod
    def from_history(
        cls, history: CovariateHistory, origin_ns: int, since_ns: int | None = None
    ) -> Grid:
        """The cells of `history` (from `since_ns` on), in seconds from `origin_ns`; each
        holds until the next one starts, the newest for ever."""
        starts_ns, series = history.grid(since_ns)
        if not starts_ns:
            return cls(np.zeros(0), np.zeros(0), np.zeros((0, len(NAMES))))
        start = (np.array(starts_ns, dtype=np.float64) - origin_ns) / NS_PER_S
        width = np.append(np.diff(start), np.inf)
        values = np.array(
            [[np.nan if v is None else v for v in column] for column in series], dtype=np.float64
        ).T.reshape(len(start), len(NAMES))
        # a covariate first read late held its first value before (the best guess there is)
        for k in range(len(NAMES)):
            known = np.flatnonzero(np.isfinite(values[:, k]))
            if len(known):
                values[: known[0], k] = values[known[0], k]
        return cls(start, width, values)

    def integral_weights(self, t_s: FloatArray) -> FloatArray:
        """(len(t), cells) matrix A with ∫_0^t f ds = A @ f for f constant on each cell.

        The first cell's value is taken to hold before it and the last one's after it, so
        samples older than the covariates still get a consistent integral.
        """
        if not len(self.start_s):
            return np.zeros((len(t_s), 0))
        starts = self.start_s.copy()
        ends = self.start_s + self.width_s
        starts[0], ends[-1] = -np.inf, np.inf
        low = np.minimum(t_s, 0.0)[:, None]
        high = np.maximum(t_s, 0.0)[:, None]
        overlap = np.maximum(
            0.0, np.minimum(ends[None, :], high) - np.maximum(starts[None, :], low)
        )
        return np.asarray(np.sign(t_s)[:, None] * overlap, dtype=np.float64)


class ResponseTrainer:
    """Holds the network between fits (the online part) and makes `ResponseFit`s."""

    def __init__(self, config: ResponseConfig | None = None) -> None:
        self.config = config or ResponseConfig()
        self._net: tuple[torch.nn.Linear, torch.nn.Linear] | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._net_inputs = 0
        self.last_error = ""

    def reset(self) -> None:
        self._net = None
        self._optimizer = None

    def fit(
        self,
        samples: Sequence[Sample],
        variances_ns2: Sequence[float],
        history: CovariateHistory,
    ) -> ResponseFit | None:
        """The response over the newest samples (None: too few to say anything)."""
        cfg = self.config
        newest = samples[-1].local_ns if samples else 0
        chosen = [
            (s, v)
            for s, v in zip(samples, variances_ns2, strict=True)
            if newest - s.local_ns <= cfg.window_s * NS_PER_S
        ][-cfg.max_samples :]
        if len(chosen) < cfg.min_samples:
            return None
        origin = chosen[-1][0].local_ns
        t = np.array([(s.local_ns - origin) / NS_PER_S for s, _v in chosen])
        y = np.array([float(s.offset_ns - chosen[-1][0].offset_ns) for s, _v in chosen])
        y0 = float(chosen[-1][0].offset_ns)
        var = np.array([max(v, 1.0) for _s, v in chosen])
        weights = np.exp(t / cfg.memory_s) / var  # t <= 0: older counts less
        grid = Grid.from_history(history, origin, since_ns=chosen[0][0].local_ns)
        # a covariate that did not move over the window explains nothing (and a constant
        # column would only make the solve singular)
        uses = tuple(
            bool(len(grid.start_s))
            and bool(np.isfinite(grid.values[:, k]).all())
            and float(np.std(grid.values[:, k])) >= MIN_SPREAD[k]
            for k in range(len(NAMES))
        )
        values = grid.values
        temperature_ref = float(np.mean(values[:, 0])) if uses[0] else 0.0
        load_ref = float(np.mean(values[:, 1])) if uses[1] else 0.0
        basis = _Basis(uses, temperature_ref, load_ref)
        a = grid.integral_weights(t) if any(uses) else np.zeros((len(t), 0))
        probe = ResponseFit(origin, uses, temperature_ref, load_ref, np.zeros(2), np.zeros((2, 2)),
                            None, 1.0, 1.0, origin, len(t), 0.0)  # fmt: skip
        cell_features = probe.features(values) if any(uses) else np.zeros((0, 0))
        phi = a @ cell_features if cell_features.size else np.zeros((len(t), 0))
        span = max(1.0, float(-t[0]))
        design = np.column_stack([(t / span) ** k for k in range(BASELINE_TERMS)] + [phi])
        mlp = None
        network_integral = np.zeros(len(t))
        if any(uses) and cfg.hidden_units:
            try:
                mlp, network_integral = self._train(design, y, weights, a, _inputs(values, basis))
            except Exception as exc:  # a failing network must not take the model down
                if str(exc) != self.last_error:
                    log.warning("response network training failed (%s); polynomial only", exc)
                self.last_error = str(exc)
                self.reset()
                mlp, network_integral = None, np.zeros(len(t))
        target = y - network_integral
        coef, cov, s2, rms = _weighted_solve(design, target, weights, cfg.ridge)
        memory = np.exp(t / cfg.memory_s)
        residual = target - design @ coef
        dof = max(1.0, float(memory.sum() - design.shape[1] * memory.mean()))
        per_unit = float((memory * residual * residual / var).sum() / dof)
        coef = coef.copy()
        coef[0] += y0
        unscale = np.ones(len(coef))
        unscale[:BASELINE_TERMS] = span ** -np.arange(BASELINE_TERMS, dtype=np.float64)
        coef *= unscale
        cov = cov * np.outer(unscale, unscale)
        return ResponseFit(
            origin_ns=origin,
            uses=uses,
            temperature_ref_c=temperature_ref,
            load_ref=load_ref,
            coef=coef,
            cov=cov,
            mlp=mlp,
            noise_scale2=s2,
            noise_per_unit_ns2=per_unit,
            last_sample_ns=origin,
            samples=len(t),
            rms_ns=rms,
        )

    def _train(
        self,
        design: FloatArray,
        y: FloatArray,
        weights: FloatArray,
        integral: FloatArray,
        inputs: FloatArray,
    ) -> tuple[tuple[FloatArray, FloatArray, FloatArray], FloatArray]:
        """A few optimizer steps on the network, the linear part solved exactly inside the
        loss; returns the network's weights and its integral at the samples."""
        import torch

        cfg = self.config
        torch.set_num_threads(1)
        n_in = inputs.shape[1]
        if self._net is None or self._net_inputs != n_in:
            torch.manual_seed(cfg.seed)
            hidden = torch.nn.Linear(n_in, cfg.hidden_units, dtype=torch.float64)
            output = torch.nn.Linear(cfg.hidden_units, 1, bias=False, dtype=torch.float64)
            torch.nn.init.zeros_(output.weight)  # starts as no correction at all
            self._net = (hidden, output)
            self._net_inputs = n_in
            self._optimizer = torch.optim.Adam(
                [*hidden.parameters(), *output.parameters()],
                lr=cfg.learning_rate,
                weight_decay=cfg.weight_decay,
            )
        assert self._net is not None and self._optimizer is not None
        hidden, output = self._net
        optimizer = self._optimizer

        def net(inputs: torch.Tensor) -> torch.Tensor:
            result: torch.Tensor = output(torch.tanh(hidden(inputs)))
            return result

        x = torch.from_numpy(inputs)
        a = torch.from_numpy(integral)
        d = torch.from_numpy(design)
        yt = torch.from_numpy(y)
        w = torch.from_numpy(weights / weights.max())
        # normalized columns keep the solve well conditioned
        scale = torch.sqrt((w[:, None] * d * d).sum(0) / w.sum()).clamp_min(1e-12)
        dn = d / scale
        gram = dn.T @ (w[:, None] * dn) + cfg.ridge * torch.eye(d.shape[1], dtype=torch.float64)
        # the network's output is in units of the offset's scale per second: its integral must
        # be comparable with y, so it is scaled by y's spread
        y_scale = float(torch.sqrt((w * yt * yt).sum() / w.sum()).clamp_min(1.0))
        for _ in range(cfg.train_steps):
            optimizer.zero_grad()
            g = net(x).squeeze(-1) * y_scale / 1000.0
            target = yt - a @ g
            beta = torch.linalg.solve(gram, dn.T @ (w * target))
            loss = (w * (target - dn @ beta) ** 2).sum() / w.sum() / (y_scale * y_scale)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            g = net(x).squeeze(-1) * y_scale / 1000.0
            integral_at = (a @ g).numpy().copy()
            w1 = hidden.weight.detach().numpy().T.copy()
            b1 = hidden.bias.detach().numpy().copy()
            w2 = output.weight.detach().numpy()[0].copy() * y_scale / 1000.0
        return (w1, b1, w2), integral_at


def _weighted_solve(
    design: FloatArray, y: FloatArray, weights: FloatArray, ridge: float
) -> tuple[FloatArray, FloatArray, float, float]:
    """(coefficients, their covariance, noise scale s² per unit weight, weighted RMS)."""
    w = weights / weights.max()
    scale = np.sqrt((w[:, None] * design * design).sum(0) / w.sum())
    scale[scale == 0] = 1.0
    dn = design / scale
    gram = dn.T @ (w[:, None] * dn) + ridge * np.eye(design.shape[1])
    inverse = np.linalg.inv(gram)
    beta = inverse @ (dn.T @ (w * y))
    residual = y - dn @ beta
    dof = max(1.0, float(w.sum() ** 2 / (w * w).sum()) - design.shape[1])
    s2 = float((w * residual * residual).sum() / dof)
    coef = beta / scale
    cov = s2 * inverse / np.outer(scale, scale)
    rms = math.sqrt(float((w * residual * residual).sum() / w.sum()))
    return coef, cov, s2, rms
