"""A bare Celery worker for the batching bench: pipeq's Celery configuration, one no-op task.

It counts the tasks it ran and, at ``PIPEQ_BENCH_NOOP_EXPECT``, writes the time to
``PIPEQ_BENCH_NOOP_DONE``. Started as ``python -m tests.bench.noop --queue Q`` with
the same pool and threads as the pipeq worker it is compared with.
"""

from __future__ import annotations

import argparse
import itertools
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    expect = int(os.environ["PIPEQ_BENCH_NOOP_EXPECT"])
    done = Path(os.environ["PIPEQ_BENCH_NOOP_DONE"])
    counter = itertools.count(1)
    lock = threading.Lock()
    app = make_app(get_settings())

    @app.task(name="bench.noop")  # type: ignore[untyped-decorator]
    def noop(i: int) -> None:
        with lock:
            if next(counter) == expect:
                done.write_text(repr(time.time()))

    worker = app.Worker(
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
