"""GPU slots shared through a file: one holder per GPU across pools, dead holders reclaimed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tuner.shared_slots import SharedSlotPool


def test_a_second_pool_on_the_file_waits_for_the_first(tmp_path: Path) -> None:
    path = tmp_path / "slots.json"
    first, second = (SharedSlotPool(path, nodes=1, gpus_per_node=2) for _ in range(2))
    got: list[tuple[int, ...]] = []
    held = first.acquire(2)
    waiter = threading.Thread(target=lambda: got.append(second.acquire(1)))
    waiter.start()
    time.sleep(0.5)
    assert got == [], "both GPUs are held: the second pool must wait"
    first.release(held)
    waiter.join(timeout=5)
    assert got and got[0][0] in (0, 1)


def test_gpus_of_a_dead_process_return_to_the_pool(tmp_path: Path) -> None:
    path = tmp_path / "slots.json"
    child = [sys.executable, "-c", "import os; print(os.getpid())"]
    pid = int(subprocess.run(child, capture_output=True, text=True).stdout)
    held = [{"ticket": "x", "pid": pid, "devices": [0, 1]}]
    path.write_text(json.dumps({"queue": [], "held": held}))
    assert sorted(SharedSlotPool(path, nodes=1, gpus_per_node=2).acquire(2)) == [0, 1]


def test_a_request_larger_than_the_machine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1-4 GPUs"):
        SharedSlotPool(tmp_path / "s.json", nodes=2, gpus_per_node=2).acquire(5)
