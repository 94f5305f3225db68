"""What the deployment is asked to serve: request lengths and the concurrency ladder."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Workload"]


@dataclass(frozen=True)
class Workload:
    """Input/output lengths in tokens and the closed-loop concurrency levels to sweep.

    ``range_ratio`` makes lengths uniform in ``[len * (1 - r), len * (1 + r)]`` as vLLM's
    random dataset does; 0 means fixed lengths.
    """

    isl: int
    osl: int
    concurrency: tuple[int, ...]
    dataset: str = "random"
    range_ratio: float = 0.0

    @property
    def seq_len(self) -> int:
        """Tokens a request holds in the KV cache when it finishes."""
        return self.isl + self.osl
