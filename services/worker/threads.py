"""Torch's threads for one forward pass: a few under load, every core for a lone job.

``pipeq worker --processes N`` gives each process cores / N torch threads, so that N
processes' passes under load share the cores instead of fighting over them (a burst of
MiniLM jobs on 2 cores: 231-246 texts/s from one process of two threads, 350-431 from two
processes of one). A lone job, though, is the only work on the host, and one thread makes
its pass slower: MiniLM on one text took 8.7-8.8 ms on one thread against 6.1-7.0 on two.
So a pass made while its job is the only one its process holds (``Gate.in_hand``) runs on
every core; any other on the process's share. Torch keeps the count per calling thread
(OpenMP's), so this is set in the thread that runs the pass, before it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PassThreads:
    """``busy``: the threads of a pass under load (None: torch's default, left alone);
    ``lone``: of a pass whose job is the only one in hand."""

    busy: int | None
    lone: int

    def set_for(self, *, lone: bool) -> None:
        if self.busy is None or self.busy >= self.lone:
            return
        import torch

        wanted = self.lone if lone else self.busy
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
