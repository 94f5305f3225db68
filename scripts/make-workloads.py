#!/usr/bin/env python3
"""Write the small example dataset files under examples/workloads/ (no download).

- ``chat.csv``: 500 chat-like requests, lognormal prompt (mean 1000, sd 700 tokens) and answer
  (mean 250, sd 150) lengths, no timestamps (use with closed-loop or Poisson load);
- ``trace.jsonl``: 600 requests with ``arrival_s`` timestamps: Poisson arrivals at 4 req/s
  whose rate doubles for the middle third (a burst), shorter summarisation-like outputs.

Seeded: rerunning the script rewrites identical files. Run from the repository root:
``python scripts/make-workloads.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "examples" / "workloads"


def lognormal(rng: np.random.Generator, mean: float, sd: float, size: int, low: int, high: int) -> np.ndarray:
    sigma2 = math.log1p((sd / mean) ** 2)
    mu = math.log(mean) - sigma2 / 2.0
    return np.clip(np.rint(rng.lognormal(mu, math.sqrt(sigma2), size)), low, high).astype(int)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(16)
    n = 500
    isl, osl = lognormal(rng, 1000, 700, n, 32, 8000), lognormal(rng, 250, 150, n, 8, 2000)
    lines = ["input_tokens,output_tokens"] + [f"{a},{b}" for a, b in zip(isl, osl, strict=True)]
    (OUT / "chat.csv").write_text("\n".join(lines) + "\n")

    n = 600
    rates = np.where(np.arange(n) // (n // 3) == 1, 8.0, 4.0)  # req/s: 4, then 8, then 4
    arrivals = np.cumsum(rng.exponential(1.0 / rates))
    arrivals -= arrivals[0]
    isl, osl = lognormal(rng, 2000, 1000, n, 64, 8000), lognormal(rng, 120, 60, n, 4, 1000)
    rows = [
        json.dumps({"input_tokens": int(a), "output_tokens": int(b), "arrival_s": round(float(t), 4)})
        for a, b, t in zip(isl, osl, arrivals, strict=True)
    ]
    (OUT / "trace.jsonl").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
