"""The GPU slot packer: disjoint placements on nodes of 8, first come first served."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuner.slots import SlotPool, pack

NODE = 8


def test_tp4_and_two_tp2_share_a_node() -> None:
    placed = pack([4, 2, 2], {0: frozenset(range(NODE))}, gpus_per_node=NODE)
    assert placed == [((0, 0), (0, 1), (0, 2), (0, 3)), ((0, 4), (0, 5)), ((0, 6), (0, 7))]


def test_larger_than_a_node_takes_whole_free_nodes_or_waits() -> None:
    free = {0: frozenset(range(NODE)), 1: frozenset(range(2, NODE))}
    assert pack([16], free, gpus_per_node=NODE) == [None]  # node 1 is partly busy: wait
    both = {0: frozenset(range(NODE)), 1: frozenset(range(NODE))}
    (place,) = pack([12], both, gpus_per_node=NODE)
    assert place is not None and len(place) == 12 and {n for n, _ in place} == {0, 1}


def test_a_waiting_request_blocks_later_ones() -> None:
    free = {0: frozenset(range(4, NODE))}
    assert pack([8, 1], free, gpus_per_node=NODE) == [None, None]


def test_best_fit_keeps_whole_nodes_free() -> None:
    free = {0: frozenset(range(NODE)), 1: frozenset({6, 7})}
    assert pack([2], free, gpus_per_node=NODE) == [((1, 6), (1, 7))]


def test_bad_requests_are_rejected() -> None:
    with pytest.raises(ValueError, match="1-8 GPUs"):
        pack([9], {0: frozenset(range(NODE))}, gpus_per_node=NODE)
    with pytest.raises(ValueError, match="1-8 GPUs"):
        pack([0], {0: frozenset(range(NODE))}, gpus_per_node=NODE)


@settings(max_examples=300, deadline=None)
@given(
    nodes=st.integers(1, 4),
    busy=st.lists(st.tuples(st.integers(0, 3), st.integers(0, NODE - 1)), max_size=20),
    requests=st.lists(st.integers(1, NODE), max_size=12),
)
def test_placements_never_overlap_nor_exceed(
    nodes: int, busy: list[tuple[int, int]], requests: list[int]
) -> None:
    free = {n: frozenset(range(NODE)) - {g for b, g in busy if b == n} for n in range(nodes)}
    placed = pack(requests, free, gpus_per_node=NODE)
    used: set[tuple[int, int]] = set()
    waiting = False
    for n, place in zip(requests, placed, strict=True):
        if place is None:
            waiting = True
            continue
        assert not waiting, "a request was placed after one that waits"
        assert len(place) == n
        assert len({node for node, _ in place}) == 1  # <= 8 GPUs: one node
        assert all(g in free[node] for node, g in place)  # only free GPUs
        assert used.isdisjoint(place)  # never two requests on one GPU
        used.update(place)
    assert all(sum(1 for node, _ in used if node == k) <= NODE for k in range(nodes))  # never exceeds


def test_pool_runs_requests_concurrently_on_disjoint_gpus() -> None:
    pool = SlotPool(nodes=1, gpus_per_node=NODE)
    held: list[tuple[int, ...]] = []
    seen: list[tuple[int, ...]] = []
    lock, together = threading.Lock(), threading.Barrier(3)

    def take(n: int) -> None:
        with pool.slots(n) as devices:
            with lock:
                held.append(devices)
                seen.append(devices)
                assert len(set().union(*held)) == sum(len(d) for d in held)  # disjoint while held
            together.wait(timeout=5)  # all three hold their GPUs at once: they fit one node
            with lock:
                held.remove(devices)

    threads = [threading.Thread(target=take, args=(n,)) for n in (4, 2, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert sorted(len(d) for d in seen) == [2, 2, 4]
    assert pool.acquire(8) == tuple(range(NODE))  # everything released
