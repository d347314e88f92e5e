"""``make chaos``: at least 1,000 jobs through kills and restarts; prints and writes the figures.

JSON goes to ``$PIPEQ_CHAOS_OUT`` (default ``.pipeq/chaos.json``). Exit status 1
if any of lost, duplicated or stuck is not 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tests.chaos.run import TARGETS, ChaosConfig, run
from tests.helpers import REPO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos")
    parser.add_argument("--jobs", type=int, default=ChaosConfig.jobs)
    parser.add_argument("--rate", type=float, default=ChaosConfig.rate, help="jobs per second")
    parser.add_argument("--seed", type=int, default=ChaosConfig.seed)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")
    args = parser.parse_args(argv)
    config = ChaosConfig(jobs=args.jobs, rate=args.rate, seed=args.seed, keep=args.keep)
    result = run(config)
    out = Path(os.environ.get("PIPEQ_CHAOS_OUT", REPO / ".pipeq" / "chaos.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(key) for key in result)
    for key, value in result.items():
        print(f"  {key:<{width}}  {value}")
    print(f"wrote {out}")
    missed = [target for target in TARGETS if result.get(target) != 0]
    if missed:
        print(f"MISSED: {', '.join(missed)} not 0", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
