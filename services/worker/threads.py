"""Torch's threads for one forward pass: a few under load, every core for a lone job.

``pipeq worker --processes N`` gives each process cores / N torch threads, so that N
processes' passes under load share the cores instead of fighting over them (a burst of
MiniLM jobs on 2 cores: 1.4-1.6 times as many texts/s from two processes of one thread as
from one process of two). A lone job, though, is the only work its process holds, and one
thread makes its pass slower: MiniLM on one text took 8.7-8.8 ms on one thread against
6.1-7.0 on two. So a pass made while its job is the only one its process holds
(``Gate.running``), and no other process of the group holds one (:class:`Peers`), runs on
``lone`` threads; any other on ``busy``. Two processes each holding one job and each taking
every core made things worse: two clients submitting one job at a time each got 33-42 ms a job
and 44-50 jobs/s in all, against 23-24 ms and 81-84 jobs/s on one thread each. Only the parent
of ``--processes`` asks for that (``--lone-threads``): a ``--torch-threads`` the user gave is
kept for every pass.

Every core is not always faster, though. Torch's OpenMP runtime, loaded after a process was
pinned to one core, made passes on two threads slower than on one (fixed: ``affinity.py``,
``load_openmp``); a host busy elsewhere, or a model whose passes do not split well, may do the
same. So each model's lone passes are timed on both counts (:class:`LoneChoice`), in rounds
of trials side by side, and the faster count runs them until the next round.

OpenMP keeps the count per calling thread, but ``torch.set_num_threads`` also sets what is
process-wide (MKL's count, the count a new thread starts with), so the count last set is kept
here too, and set again whenever a pass wants another.
"""

from __future__ import annotations

import logging
import mmap
import statistics
import struct
import threading
from pathlib import Path

log = logging.getLogger(__name__)

#: One slot per process of a group: its jobs in hand, a signed 64-bit integer.
SLOT = struct.Struct("<q")


class Peers:
    """The jobs in hand of every process of one ``--processes`` group, in a small file they
    all map (the parent makes it: ``group_file``). Each process writes only its own slot, so
    no lock is needed; a reader may see a count a moment old."""

    def __init__(self, path: Path, number: int) -> None:
        with open(path, "r+b") as handle:
            self._map = mmap.mmap(handle.fileno(), 0)
        self._slots = len(self._map) // SLOT.size
        self._own = (number - 1) * SLOT.size

    @staticmethod
    def create(path: Path, processes: int) -> None:
        path.write_bytes(bytes(SLOT.size * processes))

    def publish(self, count: int) -> None:
        SLOT.pack_into(self._map, self._own, count)

    def others_busy(self) -> bool:
        return any(
            SLOT.unpack_from(self._map, slot * SLOT.size)[0] > 0
            for slot in range(self._slots)
            if slot * SLOT.size != self._own
        )


#: Lone passes of a model timed on each thread count in one round of trials.
TRIALS = 7
#: Lone passes on the chosen count between two rounds of trials.
REVISIT = 200
#: How much faster (a share of the time an item) the process's share must be timed in a round
#: for lone passes to leave every core for it.
MARGIN = 0.1


class LoneChoice:
    """Which of two thread counts a model's lone passes run on, by timing them in rounds of
    trials: ``TRIALS`` passes on each count, alternating, then the one whose passes took less
    (median, seconds an item) runs the next ``REVISIT``; then another round, so that a host
    whose answer changes (another load, another size of input) is followed. Every core (the
    ``lone`` count) is kept unless the other is faster by more than ``MARGIN``: a round's
    trials may fall in a noisy moment (the first lone jobs after a burst, while the database
    digests it): in one of three bench rounds without it, one process of a fresh worker chose
    one thread, and that round's lone jobs took +17.7 ms over an in-process call, against
    +12.6-12.7 in the other two.

    Only the passes of one round are compared, taken side by side: a pass that another
    process slowed (on two threads, a core busy elsewhere for a moment doubles one: 7.4-8.5 ms
    against 12.9-21.8) weighs as one of ``TRIALS``. Kept running, as at first, the chosen
    count's last few passes against the other's from the round before switched a worker to
    one thread for hundreds of passes after three slow ones in a row."""

    def __init__(self, lone: int, busy: int, *, model: str = "") -> None:
        self.options = (lone, busy)
        self.model = model
        self.trials: dict[int, list[float]] = {n: [] for n in self.options}
        self.chosen: int | None = None
        self._since = 0

    def _trying(self) -> bool:
        return self.chosen is None or self._since >= REVISIT

    def pick(self) -> int:
        if self._trying():  # the fewer timed first; on a tie, every core
            return min(self.options, key=lambda n: len(self.trials[n]))
        assert self.chosen is not None
        return self.chosen

    def record(self, threads: int, seconds_per_item: float) -> None:
        if not self._trying():
            self._since += 1
            return
        self.trials[threads].append(seconds_per_item)
        if any(len(self.trials[n]) < TRIALS for n in self.options):
            return
        median = {n: statistics.median(self.trials[n]) for n in self.options}
        lone, busy = self.options
        best, other = (busy, lone) if median[busy] < median[lone] * (1 - MARGIN) else (lone, busy)
        if best != self.chosen:
            log.info(
                "model %s: lone passes on %d torch threads (%.1f ms an item) rather than %d (%.1f)",
                self.model,
                best,
                median[best] * 1000,
                other,
                median[other] * 1000,
            )
        self.chosen, self._since = best, 0
        self.trials = {n: [] for n in self.options}


class PassThreads:
    """``busy``: the threads of a pass under load (None: torch's default, left alone);
    ``lone``: of a pass whose job is the only one in hand (None: the same as ``busy``)."""

    def __init__(
        self, busy: int | None, lone: int | None = None, peers: Peers | None = None
    ) -> None:
        self.busy = busy
        self.lone: int | None = busy if lone is None else lone
        self.peers = peers
        self._last: int | None = None
        self._lock = threading.Lock()
        self._choices: dict[str, LoneChoice] = {}

    def set_for(self, *, lone: bool, model: str = "") -> int | None:
        """``lone``: this pass's job is the only one its process holds. It still runs on the
        process's share while another process of the group holds a job. Returns the count of
        a lone pass of ``model``, to be timed (:meth:`ran`); None for any other pass."""
        if self.busy is None or self.lone is None or self.lone == self.busy:
            return None
        import torch

        if lone and self.peers is not None and self.peers.others_busy():
            lone = False
        with self._lock:
            if lone:
                choice = self._choices.get(model)
                if choice is None:
                    choice = self._choices[model] = LoneChoice(self.lone, self.busy, model=model)
                wanted = choice.pick()
            else:
                wanted = self.busy
            if wanted != self._last or torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)
                self._last = wanted
        return wanted if lone else None

    def ran(self, model: str, threads: int | None, seconds: float, items: int) -> None:
        """A lone pass of ``model`` on ``threads`` (what :meth:`set_for` returned) took
        ``seconds`` for ``items`` inputs."""
        if threads is None or items < 1:
            return
        with self._lock:
            self._choices[model].record(threads, seconds / items)
