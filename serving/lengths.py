"""Request lengths: a fixed length, a named distribution with bounds, or a dataset's values.

One type, :class:`LengthDist`, for input and output lengths alike. It answers what the
simulator and memory sizing need without random draws (the mean, the spread and the
longest request, from a fixed grid of quantiles, so a prediction stays a pure function of
its inputs) and what a load generator needs (seeded draws).

Distributions, all truncated to ``[min, max]`` tokens and rounded to whole tokens:

- ``fixed``: always ``mean`` tokens (today's ``isl`` / ``osl``);
- ``uniform``: integers uniform in ``[min, max]``, as vLLM's random dataset draws them
  (``range_ratio`` r is the uniform on ``[len (1 - r), len (1 + r)]``);
- ``normal``: mean and standard deviation of the untruncated normal;
- ``lognormal``: mean and standard deviation of the lognormal itself (not of its log), the
  usual shape of chat prompt and answer lengths (long right tail);
- ``empirical``: the values of a dataset file (:mod:`serving.dataset`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = ["DISTRIBUTIONS", "GRID_POINTS", "LengthDist"]

#: The names a spec may give (``empirical`` comes from a dataset file, not from a spec).
DISTRIBUTIONS = ("fixed", "uniform", "normal", "lognormal")
#: Quantiles of the deterministic grid (midpoints of 256 equal-probability bins): the mean
#: and variance from it are within a fraction of a percent of the exact ones for every shape
#: above, and it costs microseconds.
GRID_POINTS = 256
_STD_NORMAL = NormalDist()


@dataclass(frozen=True)
class LengthDist:
    """Lengths in tokens. ``mean``/``std`` parametrise normal and lognormal (before
    truncation); ``min``/``max`` bound every distribution; ``values`` holds an empirical
    distribution's sorted lengths."""

    distribution: str
    mean: float
    std: float = 0.0
    min: int = 1
    max: int = 1
    values: tuple[int, ...] = ()

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def fixed(cls, tokens: int) -> LengthDist:
        return cls("fixed", float(tokens), 0.0, tokens, tokens)

    @classmethod
    def from_ratio(cls, tokens: int, range_ratio: float) -> LengthDist:
        """vLLM's ``--random-range-ratio``: uniform in ``[len (1 - r), len (1 + r)]``."""
        if not range_ratio:
            return cls.fixed(tokens)
        low = max(1, math.floor(tokens * (1 - range_ratio)))
        high = max(low, math.ceil(tokens * (1 + range_ratio)))
        return cls("uniform", (low + high) / 2.0, 0.0, low, high)

    @classmethod
    def empirical(cls, lengths: Sequence[int]) -> LengthDist:
        values = tuple(sorted(int(v) for v in lengths))
        return cls("empirical", float(np.mean(values)), float(np.std(values)), values[0], values[-1], values)

    # -- what the simulator and memory sizing use -----------------------------------------
    def quantile(self, q: float) -> int:
        """The q-quantile length in tokens (0 < q < 1), rounded and within the bounds."""
        q = min(max(q, 1e-9), 1.0 - 1e-9)
        d = self.distribution
        if d == "fixed":
            return self.min
        if d == "empirical":
            return int(np.quantile(np.asarray(self.values), q, method="inverted_cdf"))
        if d == "uniform":
            # Integers min..max equally likely: the q-quantile of that discrete uniform.
            return min(self.max, self.min + math.floor(q * (self.max - self.min + 1)))
        lo, hi = self._latent_cdf(self.min - 0.5), self._latent_cdf(self.max + 0.5)
        value = self._latent_inv(lo + q * (hi - lo))
        return int(min(self.max, max(self.min, round(value))))

    def grid(self) -> tuple[int, ...]:
        """Lengths at :data:`GRID_POINTS` equal-probability quantiles (a fixed sample)."""
        return tuple(self.quantile((i + 0.5) / GRID_POINTS) for i in range(GRID_POINTS))

    @property
    def mean_tokens(self) -> float:
        """Mean length after truncation and rounding (the grid's mean)."""
        if self.distribution == "fixed":
            return float(self.min)
        if self.distribution == "empirical":
            return float(np.mean(self.values))
        return float(np.mean(self.grid()))

    @property
    def cv2(self) -> float:
        """Squared coefficient of variation (variance / mean^2): 0 for fixed lengths; the
        service-time spread term of the simulator's queueing formulas."""
        if self.distribution == "fixed":
            return 0.0
        data = np.asarray(self.values if self.distribution == "empirical" else self.grid(), dtype=float)
        mean = float(data.mean())
        return float(data.var() / (mean * mean)) if mean > 0 else 0.0

    @property
    def longest(self) -> int:
        """The longest length the distribution can give (sizes max_model_len)."""
        return self.max

    # -- what a load generator uses -------------------------------------------------------
    def sample(self, rng: np.random.Generator, count: int) -> list[int]:
        """``count`` seeded draws."""
        d = self.distribution
        if d == "fixed":
            return [self.min] * count
        if d == "uniform":
            return [int(v) for v in rng.integers(self.min, self.max + 1, size=count)]
        if d == "empirical":
            return [int(v) for v in rng.choice(np.asarray(self.values), size=count)]
        return [self.quantile(float(u)) for u in rng.random(count)]

    def to_dict(self) -> dict[str, Any]:
        """The spec mapping this distribution came from (not for ``empirical``)."""
        out: dict[str, Any] = {"distribution": self.distribution}
        if self.distribution in ("normal", "lognormal"):
            out.update(mean=self.mean, std=self.std)
        elif self.distribution == "fixed":
            out["mean"] = self.min
        out.update(min=self.min, max=self.max)
        return out

    # -- the untruncated ("latent") distribution of normal and lognormal ------------------
    def _lognormal(self) -> tuple[float, float]:
        """(mu, sigma) of the log, from the lognormal's own mean and standard deviation."""
        sigma2 = math.log1p((self.std / self.mean) ** 2)
        return math.log(self.mean) - sigma2 / 2.0, math.sqrt(sigma2)

    def _latent_cdf(self, x: float) -> float:
        if self.distribution == "normal":
            return NormalDist(self.mean, self.std).cdf(x) if self.std > 0 else float(x >= self.mean)
        if x <= 0:
            return 0.0
        mu, sigma = self._lognormal()
        return _STD_NORMAL.cdf((math.log(x) - mu) / sigma) if sigma > 0 else float(x >= self.mean)

    def _latent_inv(self, p: float) -> float:
        p = min(max(p, 1e-12), 1.0 - 1e-12)
        if self.distribution == "normal":
            return NormalDist(self.mean, self.std).inv_cdf(p) if self.std > 0 else self.mean
        mu, sigma = self._lognormal()
        return math.exp(mu + sigma * _STD_NORMAL.inv_cdf(p)) if sigma > 0 else self.mean
