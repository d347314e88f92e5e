"""The chaos run's workers: real worker processes, restarted when they die, killed on cue.

Each worker is ``python -m tests.faults`` (the real ``pipeq worker`` whose
handlers honour ``fault:`` inputs, so a poison job can kill its worker). A
monitor thread plays systemd's ``Restart=always``: a worker that died (SIGKILL
from the chaos schedule, or a poison job) is started again a second later.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults import WORKER_COMMAND
from tests.helpers import WorkerProcess


@dataclass
class Fleet:
    env: dict[str, str]
    folder: Path
    groups: list[list[str]]
    concurrency: int = 4
    prefetch_multiplier: int = 2
    workers: list[WorkerProcess] = field(default_factory=list)
    kills: int = 0
    restarts: int = 0
    deaths: int = 0
    _closing: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Fleet:
        for index, queues in enumerate(self.groups):
            worker = WorkerProcess(
                queues=queues,
                env=self.env,
                log=self.folder / f"worker-{index}.log",
                extra=[
                    "--concurrency",
                    str(self.concurrency),
                    "--prefetch-multiplier",
                    str(self.prefetch_multiplier),
                    "--name",
                    self.name(index),
                ],
                command=WORKER_COMMAND,
            )
            self.workers.append(worker.start(wait=False))
        for worker in self.workers:
            worker.wait_for(r" ready\.", timeout=300)
        threading.Thread(target=self._monitor, name="chaos-monitor", daemon=True).start()
        return self

    def _monitor(self) -> None:
        died_at: dict[int, float] = {}
        while not self._closing.wait(0.25):
            with self._lock:
                for index, worker in enumerate(self.workers):
                    if worker.alive:
                        died_at.pop(index, None)
                        continue
                    if index not in died_at:
                        died_at[index] = time.monotonic()
                        self.deaths += 1
                    elif time.monotonic() - died_at[index] > 1.0:
                        worker.start(wait=False)
                        died_at.pop(index)
                        self.restarts += 1

    def name(self, index: int) -> str:
        return f"chaos{index}-{'+'.join(self.groups[index])}@pipeq-chaos"

    def kill(self, rng: random.Random, busy: dict[str, int]) -> str:
        """SIGKILL a live worker, the one running most jobs (``busy``: by worker name)."""
        with self._lock:
            alive = [i for i, w in enumerate(self.workers) if w.alive]
            if not alive:
                return "none alive"
            most = max(busy.get(self.name(i), 0) for i in alive)
            index = rng.choice([i for i in alive if busy.get(self.name(i), 0) == most])
            self.workers[index].kill()
            self.kills += 1
        return f"{self.name(index)} with {most} jobs running"

    def logs(self) -> str:
        return "\n".join(w.log_path.read_text(errors="replace") for w in self.workers)

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            for worker in self.workers:
                worker.stop(timeout=30)
