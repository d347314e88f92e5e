"""``pipeq worker --processes N``: several worker processes on one device, in one command.

A worker is one process: its job threads, Celery's consumer and its row writes share one
GIL with the forward passes, and torch's threads for one operation share the cores with
all of them. On a CPU host, N processes of cores / N torch threads each do more. Measured on
the 2-core machine this repository is built on (README, "What batching buys"): MiniLM,
batched, 231-246 texts/s from one process with torch's two threads, 350-431 from two
processes of one thread each. Each process loads its own copy of its models.

This parent imports no torch and loads nothing. It starts N ``pipeq worker`` children with
the same options, each with ``--processes 1`` and:

- a name of its own (``nlp-cpu-2@host``);
- its torch threads (cores / N on a CPU unless ``--torch-threads`` says otherwise);
- its own metrics port (the port given plus its number less one);
- its number in each of its log lines (``[2]``).

The parent passes SIGTERM, SIGINT and SIGQUIT on to the children and waits for them. Each
child runs in a process group of its own, so a terminal's Ctrl-C reaches the parent alone
and each child sees one signal, not two (a second SIGINT is Celery's cold shutdown). A child
started while a signal arrives gets SIGTERM; one whose parent dies, even by SIGKILL, gets
SIGTERM too (Linux's parent-death signal). The parent exits with the first non-zero code
among them.

A child that exits by itself is started again after a pause: 1 s, doubling to 60 s, and back
to 1 s once a child has lived a minute. That covers a crash in native code and the kernel's
OOM killer. Two exits are not restarted:

- code 2: its settings, device, database schema or broker login are wrong, and a restart
  would fail the same way. The others are stopped too and the parent exits 2.
- code 0: a remote shutdown asked for it.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

#: A worker's exit code for a configuration it refuses (``ConfigError``).
CONFIG_EXIT = 2
FIRST_PAUSE = 1.0
LONGEST_PAUSE = 60.0
#: A child that lived this long starts its next pause at FIRST_PAUSE again.
SETTLED_AFTER = 60.0
POLL_SECONDS = 0.2
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


#: A container's CPU quota (cgroup v2): "max 100000", or "200000 100000" for two CPUs.
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def cores(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may run on: its CPU affinity, less a container's CPU quota
    (cgroup v2 ``cpu.max``: ``docker run --cpus 2`` on a 64-core host means 2)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()
    except (OSError, ValueError):
        return count
    if quota == "max":
        return count
    return max(1, min(count, math.ceil(int(quota) / int(period))))


def threads_each(processes: int) -> int:
    """Torch threads for each of ``processes`` sharing this host's cores."""
    return max(1, cores() // processes)


def exit_code(returncode: int) -> int:
    """Popen's ``-N`` (killed by signal N) as a shell says it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


#: Linux's prctl option: the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1


def _ended_with(parent: int) -> Callable[[], None]:
    """For a child before it runs (the parent has no threads): SIGTERM, a warm shutdown, when
    the parent dies, even by SIGKILL; and if it died before this was set, exit at once."""

    def arrange() -> None:
        if sys.platform != "linux":
            return
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return arrange


@dataclass
class Child:
    number: int
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    pause: float = field(default_factory=lambda: FIRST_PAUSE)
    restart_at: float | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, process_group=0, preexec_fn=_ended_with(os.getpid())
        )
        self.started = time.monotonic()
        self.restart_at = None
        log.info("process %d started (pid %d)", self.number, self.process.pid)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Processes:
    """Start ``commands`` (one per child), keep them running, stop them together."""

    def __init__(self, commands: list[list[str]]) -> None:
        self.children = [Child(number, args) for number, args in enumerate(commands, 1)]
        self.stopping = False
        self.code = 0

    def run(self) -> int:
        """Pass this process's signals on to the children while they run (main thread only)."""
        previous = {
            signum: signal.signal(signum, self._forward)
            for signum in FORWARDED
            if signal.getsignal(signum) is not signal.SIG_IGN  # a shell's `&` ignores SIGINT
        }
        try:
            return self.supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def supervise(self) -> int:
        """Start every child, start again those that crash, return once all have ended."""
        for child in self.children:
            if not self.stopping:
                self._start(child)
        while any(child.process or child.restart_at is not None for child in self.children):
            self._tend(time.monotonic())
            time.sleep(POLL_SECONDS)
        return self.code

    def _start(self, child: Child) -> None:
        child.start()
        if self.stopping:  # a signal came while it started: it missed what the others got
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for child in self.children:
            if child.running:
                assert child.process is not None
                child.process.send_signal(signum)

    def _tend(self, now: float) -> None:
        for child in self.children:
            if child.restart_at is not None:
                if self.stopping:
                    child.restart_at = None
                elif now >= child.restart_at:
                    self._start(child)
                continue
            if child.process is None or (returned := child.process.poll()) is None:
                continue
            child.process = None
            code = exit_code(returned)
            if self.stopping or code == 0:
                log.info("process %d exited with code %d", child.number, code)
                self.code = self.code or code
            elif code == CONFIG_EXIT:
                log.error(
                    "process %d exited with code %d (a configuration it refuses: a restart "
                    "would fail the same way); stopping the others",
                    child.number,
                    code,
                )
                self.code = CONFIG_EXIT
                self._forward(signal.SIGTERM, None)
            else:
                if now - child.started >= SETTLED_AFTER:
                    child.pause = FIRST_PAUSE
                log.warning(
                    "process %d exited with code %d; starting it again in %.0f s",
                    child.number,
                    code,
                    child.pause,
                )
                child.restart_at = now + child.pause
                child.pause = min(child.pause * 2, LONGEST_PAUSE)
