"""A bare Celery worker for the batching bench: pipeq's Celery configuration, one no-op task.

It counts the tasks it ran and keeps ``PIPEQ_BENCH_NOOP_DONE.<name>`` up to date (every
20 ms, when it changed) with that count and the time the last one ended: the bench adds
up the files of several such processes. Started as ``python -m tests.bench.noop --queue Q
--name N`` with the same pool and threads as the pipeq worker it is compared with.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from shared.celery_app import make_app
from shared.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.noop")
    parser.add_argument("--queue", action="append", default=[])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--name", default="noop@bench")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    done = Path(f"{os.environ['PIPEQ_BENCH_NOOP_DONE']}.{args.name}")
    ran = [0, 0.0]  # tasks, the time the last one ended
    lock = threading.Lock()
    app = make_app(get_settings())

    @app.task(name="bench.noop")  # type: ignore[untyped-decorator]
    def noop(i: int) -> None:
        with lock:
            ran[0] += 1
            ran[1] = time.time()

    def report() -> None:
        written = None
        while True:
            with lock:
                now = f"{ran[0]} {ran[1]!r}"
            if now != written:
                done.write_text(now)
                written = now
            time.sleep(0.02)

    threading.Thread(target=report, daemon=True).start()
    worker = app.Worker(
        hostname=args.name,
        queues=args.queue or ["nlp"],
        pool="threads",
        concurrency=args.concurrency,
        loglevel="INFO",
        without_gossip=True,
        without_mingle=True,
    )
    worker.start()
    return int(worker.exitcode or 0)


if __name__ == "__main__":
    sys.exit(main())
