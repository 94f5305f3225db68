"""GPU slots shared by the worker processes of one machine, through a file.

`tuner tune --workers N` starts N `tuner worker` processes on one machine. Each runs several
trials at once on disjoint GPUs (:class:`~tuner.slots.SlotPool`), but a pool per process
would hand GPU 0 to a trial of every worker. :class:`SharedSlotPool` keeps the machine's
queue and holdings in one JSON file, changed only under an exclusive ``flock`` of a lock
file beside it, and places requests with the same pure :func:`~tuner.slots.pack`: first
come, first served across all the workers, aligned blocks inside a node, never one GPU
for two trials.

A worker killed with SIGKILL cannot give its GPUs back; every change first drops the
entries of processes that no longer exist, so their GPUs return to the pool.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .slots import pack

__all__ = ["SLOTS_ENV", "SharedSlotPool"]

#: The environment variable that names the shared slot file of a machine's local workers.
SLOTS_ENV = "TUNER_SLOTS_FILE"

#: How often a waiting request looks again (seconds): trials last minutes on a live backend.
POLL_S = 0.1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class SharedSlotPool:
    """The GPUs of this machine's nodes, shared by every process that opens ``path``.

    Same interface as :class:`~tuner.slots.SlotPool`: ``capacity``, ``acquire``,
    ``release`` and the ``slots`` context manager; devices are global GPU ids
    (node * ``gpus_per_node`` + index).
    """

    def __init__(self, path: str | Path, *, nodes: int, gpus_per_node: int) -> None:
        if nodes < 1 or gpus_per_node < 1:
            raise ValueError(
                f"a slot pool needs >= 1 node and >= 1 GPU per node, got {nodes} x {gpus_per_node}"
            )
        self.path = Path(path)
        self.gpus_per_node = gpus_per_node
        self.nodes = nodes
        self.capacity = nodes * gpus_per_node
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        """The file's state under the exclusive lock, written back on exit; dead processes'
        queue entries and holdings are dropped first."""
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    state = json.loads(self.path.read_text() or "{}")
                except FileNotFoundError:
                    state = {}
                state.setdefault("queue", [])
                state.setdefault("held", [])
                state["queue"] = [q for q in state["queue"] if _alive(q["pid"])]
                state["held"] = [h for h in state["held"] if _alive(h["pid"])]
                yield state
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(json.dumps(state))
                tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _free(self, held: Sequence[dict[str, Any]]) -> dict[int, set[int]]:
        taken = {d for h in held for d in h["devices"]}
        return {
            node: {g for g in range(self.gpus_per_node) if node * self.gpus_per_node + g not in taken}
            for node in range(self.nodes)
        }

    def acquire(self, n: int) -> tuple[int, ...]:
        """Block until ``n`` GPUs are placed for the caller; returns their global ids."""
        if not 1 <= n <= self.capacity:
            raise ValueError(f"a request needs 1-{self.capacity} GPUs (the nodes' total), got {n}")
        ticket = uuid.uuid4().hex
        with self._state() as state:
            state["queue"].append({"ticket": ticket, "pid": os.getpid(), "n": n})
        try:
            while True:
                with self._state() as state:
                    queue = state["queue"]
                    placements = pack(
                        [q["n"] for q in queue], self._free(state["held"]), gpus_per_node=self.gpus_per_node
                    )
                    index = next(i for i, q in enumerate(queue) if q["ticket"] == ticket)
                    mine = placements[index]
                    if mine is not None:
                        devices = tuple(node * self.gpus_per_node + g for node, g in mine)
                        del queue[index]
                        state["held"].append({"ticket": ticket, "pid": os.getpid(), "devices": list(devices)})
                        return devices
                time.sleep(POLL_S)
        except BaseException:  # interrupted while waiting: leave the queue
            with self._state() as state:
                state["queue"] = [q for q in state["queue"] if q["ticket"] != ticket]
            raise

    def release(self, devices: Sequence[int]) -> None:
        """Give back GPUs this process holds."""
        wanted, pid = sorted(devices), os.getpid()
        with self._state() as state:
            for i, h in enumerate(state["held"]):
                if h["pid"] == pid and sorted(h["devices"]) == wanted:
                    del state["held"][i]
                    break

    @contextlib.contextmanager
    def slots(self, n: int) -> Iterator[tuple[int, ...]]:
        devices = self.acquire(n)
        try:
            yield devices
        finally:
            self.release(devices)
