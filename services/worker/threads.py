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

OpenMP keeps the count per calling thread, but ``torch.set_num_threads`` also sets what is
process-wide (MKL's count, the count a new thread starts with), so the count last set is kept
here too, and set again whenever a pass wants another.
"""

from __future__ import annotations

import mmap
import struct
import threading
from pathlib import Path

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

    def set_for(self, *, lone: bool) -> None:
        """``lone``: this pass's job is the only one its process holds. It still runs on the
        process's share while another process of the group holds a job."""
        if self.busy is None or self.lone is None or self.lone == self.busy:
            return
        import torch

        if lone and self.peers is not None and self.peers.others_busy():
            lone = False
        wanted = self.lone if lone else self.busy
        with self._lock:
            if wanted != self._last or torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)
                self._last = wanted
