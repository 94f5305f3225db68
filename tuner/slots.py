"""GPU slots: which GPUs each waiting candidate gets, so trials share nodes without overlap.

:func:`pack` is a pure function over the free GPUs and the queue of requests: a TP4
candidate and two TP2 candidates share an 8-GPU node; a candidate larger than a node takes
whole free nodes; one that does not fit now waits, and so does every request behind it
(first come, first served: a large candidate is never starved by a stream of small ones).

Inside a node a request of n GPUs takes an aligned block of the next power of two >= n
(GPUs 0-3 or 4-7 for a TP4), the NVLink/PCIe-switch locality that tensor parallelism
wants, on the fullest node where one is free (best fit keeps whole nodes free for large
candidates); without an aligned block it takes any n free GPUs of one node.

:class:`SlotPool` is the thread-safe wrapper a worker uses: ``acquire`` blocks until the
packer places the request, ``release`` gives the GPUs back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

__all__ = ["GpuSlots", "Placement", "SlotPool", "pack"]

#: (node index, GPU index within the node) of every GPU a request received, sorted.
Placement = tuple[tuple[int, int], ...]


def _block(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


def _in_node(n: int, free: Mapping[int, set[int]], gpus_per_node: int) -> Placement | None:
    by_fullness = sorted(free, key=lambda node: (len(free[node]), node))
    size = _block(n)
    for node in by_fullness:
        for start in range(0, gpus_per_node - size + 1, size):
            block = range(start, start + size)
            if all(g in free[node] for g in block):
                return tuple((node, g) for g in block[:n])
    for node in by_fullness:
        if len(free[node]) >= n:
            return tuple((node, g) for g in sorted(free[node])[:n])
    return None


def _whole_nodes(n: int, free: Mapping[int, set[int]], gpus_per_node: int) -> Placement | None:
    empty = [node for node in sorted(free) if len(free[node]) == gpus_per_node]
    need = -(-n // gpus_per_node)
    if len(empty) < need:
        return None
    gpus = [(node, g) for node in empty[:need] for g in range(gpus_per_node)]
    return tuple(gpus[:n])


def pack(
    requests: Sequence[int], free: Mapping[int, frozenset[int] | set[int]], *, gpus_per_node: int
) -> list[Placement | None]:
    """Placements for ``requests`` (GPU counts, in queue order) on the ``free`` GPUs of
    each node (node index -> free GPU indices in ``range(gpus_per_node)``).

    Returns one entry per request: its GPUs, or None when it must wait. Placements never
    overlap, never use a GPU that is not free, and once a request waits every later one
    waits too. A request of 0 GPUs or of more GPUs than all nodes have is a ValueError.
    """
    if gpus_per_node < 1:
        raise ValueError(f"gpus_per_node must be >= 1, got {gpus_per_node}")
    left = {node: set(gpus) for node, gpus in free.items()}
    capacity = gpus_per_node * len(left)
    out: list[Placement | None] = []
    blocked = False
    for n in requests:
        if not 1 <= n <= capacity:
            raise ValueError(f"a request needs 1-{capacity} GPUs (the nodes' total), got {n}")
        place = None
        if not blocked:
            place = (_in_node if n <= gpus_per_node else _whole_nodes)(n, left, gpus_per_node)
        if place is None:
            blocked = True
        else:
            for node, g in place:
                left[node].discard(g)
        out.append(place)
    return out


class GpuSlots(Protocol):
    """What the study needs of a worker's GPUs: how many, and a block of them per trial
    (:class:`SlotPool` in one process; :class:`~tuner.shared_slots.SharedSlotPool` across the
    worker processes of a machine)."""

    capacity: int

    def slots(self, n: int) -> AbstractContextManager[tuple[int, ...]]: ...


class SlotPool:
    """The GPUs of a worker's nodes, handed out by :func:`pack` in request order."""

    def __init__(self, *, nodes: int, gpus_per_node: int) -> None:
        if nodes < 1 or gpus_per_node < 1:
            raise ValueError(
                f"a slot pool needs >= 1 node and >= 1 GPU per node, got {nodes} x {gpus_per_node}"
            )
        self.gpus_per_node = gpus_per_node
        self.capacity = nodes * gpus_per_node
        self._free = {node: set(range(gpus_per_node)) for node in range(nodes)}
        self._queue: list[tuple[object, int]] = []
        self._cond = threading.Condition()

    def devices(self, place: Placement) -> tuple[int, ...]:
        """Global GPU ids (node * gpus_per_node + index) of a placement."""
        return tuple(node * self.gpus_per_node + g for node, g in place)

    def acquire(self, n: int) -> tuple[int, ...]:
        """Block until ``n`` GPUs are placed for the caller; returns their global ids."""
        ticket = object()
        with self._cond:
            self._queue.append((ticket, n))
            while True:
                placements = pack([k for _, k in self._queue], self._free, gpus_per_node=self.gpus_per_node)
                index = next(i for i, (t, _) in enumerate(self._queue) if t is ticket)
                mine = placements[index]
                if mine is not None:
                    del self._queue[index]
                    for node, g in mine:
                        self._free[node].discard(g)
                    self._cond.notify_all()
                    return self.devices(mine)
                self._cond.wait()

    def release(self, devices: Sequence[int]) -> None:
        with self._cond:
            for d in devices:
                self._free[d // self.gpus_per_node].add(d % self.gpus_per_node)
            self._cond.notify_all()

    @contextmanager
    def slots(self, n: int) -> Iterator[tuple[int, ...]]:
        devices = self.acquire(n)
        try:
            yield devices
        finally:
            self.release(devices)
