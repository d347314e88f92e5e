"""Freezing the worker's heap out of full garbage collections, and freeing frozen cycles."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.worker.memory import freeze_heap, release_memory


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cycle collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freeze_heap_takes_live_objects_out_of_full_collections(unfrozen: None) -> None:
    kept = Node()
    frozen = freeze_heap()
    # Frozen objects are still freed when their last reference goes (another test's thread
    # may drop some meanwhile), but nothing joins them without another freeze.
    assert 0 < gc.get_freeze_count() <= frozen
    assert all(obj is not kept for obj in gc.get_objects())  # no collection looks at it


def test_frozen_garbage_cycle_survives_a_collection_but_not_release(unfrozen: None) -> None:
    node = Node()
    gone = weakref.ref(node)
    freeze_heap()
    del node
    gc.collect()
    assert gone() is not None  # frozen: a plain collection leaves it (an evicted model would)
    release_memory(collect=True)
    assert gone() is None
    assert gc.get_freeze_count() > 0  # what is still alive is frozen again


def test_release_without_a_frozen_heap_leaves_it_unfrozen(unfrozen: None) -> None:
    node = Node()
    gone = weakref.ref(node)
    del node
    release_memory(collect=True)
    assert gone() is None
    assert gc.get_freeze_count() == 0
