"""``make bench``: run every part (or ``--only NAME``), print a table, write JSON.

JSON goes to ``$PIPEQ_BENCH_OUT`` (default ``.pipeq/bench.json``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.context import REPO, bench_context

#: Benchmark parts, in the order they run.
PARTS = [
    "tests.bench.roundtrip",
    "tests.bench.beat",
    "tests.bench.gateway",
    "tests.bench.models",
    "tests.bench.delivery",
    "tests.bench.observe",
    "tests.bench.batching",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--only", action="append", help="run only this part (repeatable)")
    args = parser.parse_args(argv)
    out = Path(os.environ.get("PIPEQ_BENCH_OUT", REPO / ".pipeq" / "bench.json"))
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with (
        tempfile.TemporaryDirectory(prefix="pipeq-bench-") as scratch,
        bench_context(Path(scratch)) as ctx,
    ):
        for name in PARTS:
            module = importlib.import_module(name)
            if args.only and module.NAME not in args.only:
                continue
            print(f"== {module.NAME}", flush=True)
            started = time.perf_counter()
            figures = module.run(ctx)
            figures[f"{module.NAME}_seconds"] = round(time.perf_counter() - started, 1)
            for key, value in figures.items():
                print(f"  {key:<40} {value}")
            results.update(figures)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
