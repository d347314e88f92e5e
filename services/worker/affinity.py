"""The cores a process of a ``--processes`` group keeps its Python threads on.

Each worker process runs some hundred Python threads (Celery's consumer, 64 job threads,
the supervisor, a model's forward thread), all taking turns at one GIL. Left to the
scheduler, they wander over every core: each handover of the GIL then likely moves the
interpreter's hot data (reference counts, the frames, the GIL itself) from one core's cache
to another's, and the two processes of a 2-core host keep evicting each other. ``pipeq worker
--processes N`` therefore gives each child an even share of the cores (:func:`shares`); the
child's threads run there (:func:`pin`, before it starts any, but after torch's OpenMP
runtime has counted every core: :func:`load_openmp`), and only a forward pass
widens to every core the command may use (:func:`widened`), so that a lone job's pass still
runs on all of them (``threads.py``) and torch's threads, started by the thread making the
pass, inherit all of them.

Measured on this repository's 2-core host, one warm worker of two processes, 2,000-job
bursts alternating pinned and unpinned: MiniLM 335-359 texts/s against 275-304, the job
threads' CPU 1.2-1.3 s against 1.7-1.9, the forward threads' 7.6-7.9 s against 8.2-8.8 (the
same passes); tiny jobs 792-911 jobs/s against 628-705. Lone jobs took as long either way.
One process pinned the same way gained nothing measurable, so a single process is left alone.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: Every core the process may use (its affinity before :func:`pin`); None: not pinned.
_ALL: frozenset[int] | None = None


def shares(allowed: list[int], processes: int) -> list[list[int]] | None:
    """An even, contiguous share of ``allowed`` for each of ``processes`` (in order), or None
    where there are fewer cores than processes (each would not have one of its own)."""
    cores = sorted(allowed)
    if processes < 2 or processes > len(cores):
        return None
    count = len(cores)
    return [cores[k * count // processes : (k + 1) * count // processes] for k in range(processes)]


def group_shares(processes: int) -> list[list[int]] | None:
    """The shares of this host's cores for a group of ``processes`` (:func:`shares`); None
    off Linux, and in a container whose CPU quota is less than the cores it may run on (its
    time may come from any of them)."""
    from services.worker.processes import cores

    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    if cores() < len(allowed):
        return None
    return shares(allowed, processes)


def parse(text: str) -> list[int]:
    """``--cores 2,3`` as a list of core numbers."""
    return [int(part) for part in text.split(",") if part.strip()]


def pin(own: list[int]) -> None:
    """Keep the calling thread, and every thread it starts from now on, on ``own``; a
    forward pass still runs on every core the process could use until now (:func:`widened`).
    Torch is loaded first (:func:`load_openmp`); the one idle thread its import starts keeps
    every core."""
    global _ALL
    load_openmp()
    allowed = os.sched_getaffinity(0)
    _ALL = frozenset(allowed)
    os.sched_setaffinity(0, set(own) & allowed or allowed)


def load_openmp() -> None:
    """Load torch, and with it libgomp (its OpenMP runtime), while the process still has every
    core: libgomp counts the cores it may use once, as it loads, and whenever its threads
    outnumber that count it makes them spin only a hundred times before sleeping between
    two operations of a pass. Loaded after :func:`pin`, it counted one core, so that every
    pass on two threads woke a sleeping thread for each of its operations: a lone MiniLM pass
    on two threads took 11.8-17.9 ms against 7.4-8.5 ms with torch loaded first (2-core host)."""
    import torch  # noqa: F401


@contextlib.contextmanager
def widened() -> Iterator[None]:
    """The calling thread on every core the process may use, then back on its own: around a
    forward pass (torch's threads, which the thread starts on its first pass that wants
    them, keep the cores they start with), and around spawning a model's own process."""
    if _ALL is None:
        yield
        return
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, _ALL)
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)
